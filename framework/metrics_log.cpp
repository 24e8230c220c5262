#include "framework/metrics_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/checkpoint_dir.hpp"

namespace stride {
namespace {

using nlohmann::json;

std::string format_eta(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

// Keeps the lines of metrics.jsonl up to and including global step `step` (what the checkpoint had seen) and
// drops the rest, including a half-written last line of a killed run, so the resumed run appends after them.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      check_json_depth(line, path);
    } catch (const ConfigError&) {
      break;  // not a line stride wrote: it and everything after it go
    }
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) break;
    if (j["step"].get<int64_t>() > step) break;
    kept += line + "\n";
  }
  in.close();
  write_text_atomically(path, kept);
}

long long ll(int64_t v) { return static_cast<long long>(v); }

}  // namespace

MetricsLog::MetricsLog(const std::string& run_dir, std::optional<int64_t> resumed_at, ProgressDisplay display,
                       bool writes, std::ostream& log, const RunClock& clock)
    : path_((std::filesystem::path(run_dir) / "metrics.jsonl").string()),
      display_(display),
      writes_(writes),
      log_(log),
      clock_(clock) {
  if (!writes_) return;
  if (resumed_at) truncate_metrics(path_, *resumed_at);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (resumed_at ? O_APPEND : O_TRUNC), 0644);
  if (fd_ < 0) throw IoError(path_ + ": cannot open for writing: " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::write_line(const std::string& text) {
  // One write() per line: a line reaches the operating system whole as soon as it is logged, so a killed run
  // loses at most the line being written (which a resumed run drops).
  const std::string line = text + "\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw IoError(path_ + ": cannot write: " + std::strerror(n < 0 ? errno : ENOSPC));
    done += static_cast<size_t>(n);
  }
}

void MetricsLog::set_run_shape(int64_t processes, int64_t micro_batch, std::vector<std::string> hosts) {
  processes_ = processes;
  micro_batch_ = micro_batch;
  hosts_ = std::move(hosts);
}

void MetricsLog::start_epoch(int64_t first_step) {
  first_step_ = first_step;
  epoch_start_ = window_start_ = RunClock::Clock::now();
}

void MetricsLog::add_step(const StepStats& stats, const StepPlace& place, double lr, int64_t log_every) {
  TrainingProgress& p = progress_;
  p.epoch_loss_sum += stats.loss;
  p.window_loss_sum += stats.loss;
  p.epoch_correct += stats.correct;
  p.window_correct += stats.correct;
  p.window_count += stats.count;
  ++p.window_steps;
  const int64_t s = place.step_in_epoch, steps = place.steps_per_epoch;
  if ((s + 1) % log_every != 0 && s + 1 != steps) return;

  const double elapsed = RunClock::since(window_start_);
  const double img_s = static_cast<double>(p.window_count) / std::max(elapsed, 1e-9);
  // The epoch's remaining time from this session's pace, and the later epochs at a full epoch's pace.
  const double done = static_cast<double>(s + 1 - first_step_) / static_cast<double>(steps - first_step_);
  const double epoch_elapsed = RunClock::since(epoch_start_);
  const double per_epoch =
      epoch_elapsed / done * static_cast<double>(steps - first_step_) / static_cast<double>(steps);
  const double eta = epoch_elapsed / done * (1 - done) + per_epoch * static_cast<double>(place.epochs - place.epoch - 1);
  const double window_loss = p.window_loss_sum / static_cast<double>(p.window_steps);
  const double window_acc = static_cast<double>(p.window_correct) / static_cast<double>(p.window_count);
  if (writes_) {
    const json line = {{"kind", "step"},      {"epoch", place.epoch + 1},  {"step", place.global_step},
                       {"loss", window_loss}, {"train_acc", window_acc}, {"lr", lr},
                       {"img_per_s", img_s},  {"seconds", clock_.seconds()}};
    write_line(line.dump());
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.3f lr %.5f %.0f img/s ETA %s",
                  ll(place.epoch + 1), ll(place.epochs), ll(s + 1), ll(steps), window_loss, window_acc, lr, img_s,
                  format_eta(eta).c_str());
    if (display_ == ProgressDisplay::bar) {
      const int width = 24;
      const int filled = static_cast<int>(static_cast<double>(s + 1) / static_cast<double>(steps) * width);
      log_ << "\r[" << std::string(static_cast<size_t>(filled), '=')
           << std::string(static_cast<size_t>(width - filled), ' ') << "] " << text << "\033[K" << std::flush;
    } else if (display_ == ProgressDisplay::lines) {
      log_ << text << "\n";
    }
  }
  p.window_loss_sum = 0;
  p.window_correct = p.window_count = p.window_steps = 0;
  window_start_ = RunClock::Clock::now();
}

void MetricsLog::end_epoch(const StepPlace& place, int64_t samples, int64_t session_samples, const EvalResult& test,
                           double lr) {
  const double epoch_seconds = RunClock::since(epoch_start_);
  const double epoch_loss = progress_.epoch_loss_sum / static_cast<double>(place.steps_per_epoch);
  const double train_acc = static_cast<double>(progress_.epoch_correct) / static_cast<double>(samples);
  const double img_s = static_cast<double>(session_samples) / std::max(epoch_seconds, 1e-9);
  if (writes_) {
    const json line = {{"kind", "epoch"},         {"epoch", place.epoch + 1}, {"step", place.global_step},
                       {"loss", epoch_loss},      {"train_acc", train_acc},  {"test_acc", test.accuracy()},
                       {"test_loss", test.loss},  {"lr", lr},                {"img_per_s", img_s},
                       {"seconds", clock_.seconds()}, {"processes", processes_}, {"micro_batch", micro_batch_},
                       {"hosts", hosts_}};
    write_line(line.dump());
    clear_bar();
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld: loss %.4f train acc %.4f test acc %.4f (%.1f s, %.0f img/s)\n",
                  ll(place.epoch + 1), ll(place.epochs), epoch_loss, train_acc, test.accuracy(), epoch_seconds, img_s);
    log_ << text << std::flush;
  }
  progress_ = TrainingProgress{};
  progress_.test_accuracy = test.accuracy();
  progress_.test_loss = test.loss;
}

void MetricsLog::clear_bar() {
  if (writes_ && bar()) log_ << "\r\033[K";
}

void MetricsLog::flush() {
  // Every line is already written; fsync makes them durable before the checkpoint that has seen them.
  if (writes_ && fd_ >= 0 && ::fsync(fd_) != 0) throw IoError(path_ + ": fsync failed: " + std::strerror(errno));
}

}  // namespace stride
