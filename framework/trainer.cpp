#include "framework/trainer.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <ostream>

#include "framework/checkpoint_policy.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/evaluation.hpp"
#include "framework/core/limits.hpp"
#include "framework/metrics_log.hpp"
#include "framework/numeric_check.hpp"
#include "framework/run_config.hpp"
#include "framework/run_setup.hpp"
#include "framework/training_step.hpp"

namespace stride {

void validate(const TrainConfig& c) {
  auto positive = [](const char* flag, int64_t v) {
    if (v < 1) throw UsageError(std::string(flag) + ": expected a value >= 1, got " + std::to_string(v));
  };
  positive("--epochs", c.epochs);
  positive("--batch", c.batch);
  positive("--log-every", c.log_every);
  positive("--eval-batch", c.eval_batch);
  if (c.micro_batch < 0) throw UsageError("--micro-batch: expected a value >= 0, got " + std::to_string(c.micro_batch));
  if (!(c.bucket_mb > 0) || !std::isfinite(c.bucket_mb))
    throw UsageError("--bucket-mb: expected a positive number, got " + std::to_string(c.bucket_mb));
  // A learning rate is a small positive number; 1e308 would turn the first update into infinities.
  if (!(c.lr > 0) || !(c.lr <= 1e6)) {
    char text[64];
    std::snprintf(text, sizeof text, "%.17g", c.lr);
    throw UsageError(std::string("--lr: expected a positive number up to 1e6, got ") + text);
  }
  if (c.limit_train < 0 || c.limit_test < 0) throw UsageError("--limit-train/--limit-test: expected >= 0");
  if (c.data.empty()) throw UsageError("--data: required (a CIFAR-10 or IDX directory, or an HDF5 file)");
  if (c.checkpoint_every < 0 || c.checkpoint_epochs < 0)
    throw UsageError("--checkpoint-every/--checkpoint-epochs: expected >= 0");
  if (!(c.checkpoint_minutes >= 0) || !std::isfinite(c.checkpoint_minutes))
    throw UsageError("--checkpoint-minutes: expected a number of minutes >= 0, got " + std::to_string(c.checkpoint_minutes));
  if (c.keep < 1) throw UsageError("--keep: expected a value >= 1, got " + std::to_string(c.keep));
  if (!c.resume.empty() && !c.init_weights.empty())
    throw UsageError("--resume and --init: give one (--resume continues a run, --init starts a new one from weights)");
  if (!c.resume.empty() && c.overwrite)
    throw UsageError("--resume and --overwrite: give one (--resume continues the run, --overwrite replaces it)");
  // Kinds checked here too, so a misspelt flag fails before any data is read.
  const std::string& opt = c.optimizer.kind;
  if (opt != "sgd" && opt != "adam" && opt != "adamw")
    throw UsageError("--optimizer: expected sgd, adam or adamw, got \"" + echo(opt) + "\"");
  const std::string& sch = c.schedule.kind;
  if (sch != "constant" && sch != "step" && sch != "multistep" && sch != "cosine")
    throw UsageError("--schedule: expected constant, step, multistep or cosine, got \"" + echo(sch) + "\"");
  if (c.on_nan != "stop" && c.on_nan != "skip-batch")
    throw UsageError("--on-nan: expected stop or skip-batch, got \"" + echo(c.on_nan) + "\"");
}

namespace {

// "2 threads" when every process runs as many as this one (or they are not known), else each process's:
// "2, 1 threads (per process)": a task that its launcher bound to fewer cores shows in the log.
std::string threads_text(const std::vector<int64_t>& per_process) {
  const int64_t mine = max_threads();
  bool same = true;
  for (int64_t t : per_process) same = same && t == mine;
  if (same) return std::to_string(mine) + (mine == 1 ? " thread" : " threads");
  std::string text;
  for (int64_t t : per_process) text += (text.empty() ? "" : ", ") + std::to_string(t);
  return text + " threads (per process)";
}

// A run directory chosen from the checkpoint when --resume is given without --out; one that holds another run
// is refused here, before any data is read (check_run_dir).
TrainConfig with_run_dir(TrainConfig config, const std::optional<ResumePoint>& resume) {
  if (config.out.empty() && resume) config.out = resume->run_dir;
  if (config.out.empty()) config.out = "runs/latest";
  check_run_dir(config, resume ? resume->run_dir : std::string());
  return config;
}

class Trainer {
 public:
  Trainer(const TrainConfig& config, std::optional<ResumePoint> resume, std::ostream& log, GradientReducer& reducer);
  TrainResult run();

 private:
  // Trains epoch `epoch` from its step `first`; false when a stop request ended it.
  bool run_epoch(int64_t epoch, int64_t first);
  // Tests, logs and checkpoints the end of epoch `epoch`; false when a stop request ends the run there.
  bool finish_epoch(int64_t epoch, int64_t first);
  bool stop_requested();
  // Whether --checkpoint-minutes make this step boundary a checkpoint: process 0's clock decides, and every
  // process gets its answer through the reducer, so they all agree whatever their clocks say.
  bool minutes_due();
  // Several processes: every one starts from process 0's parameters and optimizer state, and from the same
  // run (settings, data normalization, position), checked by checksum.
  void start_together();
  void on_non_finite(const StepStats& stats, int64_t epoch);
  TrainResult stopped(int64_t epoch_in_progress);
  StepPlace place(int64_t epoch, int64_t step_in_epoch) const {
    return {epoch, config_.epochs, step_in_epoch, steps_per_epoch_, step_};
  }

  RunClock clock_;
  const std::optional<ResumePoint> resume_;
  const TrainConfig config_;
  std::ostream& log_;
  GradientReducer& reducer_;
  const bool writes_;
  RunData data_;
  RunModel model_;
  RunIdentity identity_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t train_count_, steps_per_epoch_;
  ResumeState start_;
  int64_t step_ = 0;  // global steps done
  std::unique_ptr<BatchAssembler> train_batches_, test_batches_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<CheckpointPolicy> checkpoints_;
  TrainingStep training_step_;
  TrainResult result_;
};

Trainer::Trainer(const TrainConfig& config, std::optional<ResumePoint> resume, std::ostream& log,
                 GradientReducer& reducer)
    : resume_(std::move(resume)),
      config_(with_run_dir(config, resume_)),
      log_(log),
      reducer_(reducer),
      writes_(reducer.writes_output()),
      data_(open_run_data(config_)),
      model_(build_run_model(config_, data_)),
      optimizer_(make_optimizer(config_.optimizer, model_.net)),
      train_count_(data_.train->info().count),
      steps_per_epoch_((train_count_ - 1) / config_.batch + 1),  // no overflow for --batch near 2^63
      training_step_(model_.net, *optimizer_, reducer_, config_.batch, config_.micro_batch,
                     std::max<int64_t>(1, static_cast<int64_t>(config_.bucket_mb * (1 << 20) / 8))) {
  identity_.normalization = compute_normalization(*data_.train, reducer_);
  identity_.schedule = make_schedule(config_, train_count_);
  identity_.model_spec = model_.spec;
  identity_.run_config = run_config_json(config_, identity_.schedule, augment_name(data_.augment), train_count_);
  identity_.seed = config_.seed;
  identity_.class_names = model_.class_names;
  train_batches_ = std::make_unique<BatchAssembler>(*data_.train, identity_.normalization, data_.augment, config_.seed);
  test_batches_ = std::make_unique<BatchAssembler>(*data_.test, identity_.normalization, Augment::none, config_.seed);
  if (resume_) start_ = resume_run(*resume_, config_, identity_, model_.net, *optimizer_, steps_per_epoch_);
  step_ = start_.position.step;
  clock_.set_offset(start_.wall_time);
  start_together();

  if (writes_ && config_.overwrite) remove_run(config_.out, log_);
  if (writes_) std::filesystem::create_directories(config_.out);
  ProgressDisplay display = config_.progress;
  if (display == ProgressDisplay::automatic)
    display = ::isatty(STDOUT_FILENO) ? ProgressDisplay::bar : ProgressDisplay::lines;
  metrics_ = std::make_unique<MetricsLog>(config_.out, resume_ ? std::optional<int64_t>(step_) : std::nullopt, display,
                                          writes_, log_, clock_);
  metrics_->progress() = start_.progress;
  metrics_->set_run_shape(reducer_.processes(), config_.micro_batch, config_.hosts);
  checkpoints_ = std::make_unique<CheckpointPolicy>(config_, identity_, model_.net, *optimizer_, *metrics_, clock_, log_);
  checkpoints_->start_clock(step_);
  result_.run_dir = config_.out;
  result_.metrics_path = metrics_->path();
  result_.test_accuracy = start_.progress.test_accuracy;
  if (!writes_) return;
  const DatasetInfo& info = data_.train->info();
  log_ << "stride: training " << model_.source.where << " (" << model_.net.learnable_count() << " params) on "
       << info.source << ": " << train_count_ << " train / " << data_.test->info().count << " test images "
       << info.channels << "x" << info.height << "x" << info.width << ", " << config_.epochs << " epochs of "
       << steps_per_epoch_ << " steps (batch " << config_.batch << "), " << optimizer_->kind() << ", "
       << describe(identity_.schedule) << ", augment " << augment_name(data_.augment) << ", seed " << config_.seed
       << (config_.precision == Precision::bf16 ? ", bf16 convolutions and linear layers (fp32 sums and master weights)" : "")
       << "\n";
  if (training_step_.exact() || reducer_.processes() > 1)
    log_ << "stride: " << reducer_.processes() << (reducer_.processes() == 1 ? " process" : " processes") << " of "
         << threads_text(config_.threads) << ", micro-batches of " << config_.micro_batch << ", exact gradient sum in "
         << training_step_.exact_sum().buckets().size() << " bucket"
         << (training_step_.exact_sum().buckets().size() == 1 ? "" : "s") << "\n";
  if (resume_)
    log_ << "stride: resuming from " << resume_->path << " at epoch " << start_.position.epoch + 1 << " step " << step_
         << "\n";
  if (resume_ && !start_.precision_note.empty()) log_ << "stride: " << start_.precision_note << "\n";
}

void Trainer::start_together() {
  if (reducer_.processes() == 1) return;
  Network& net = model_.net;
  reducer_.broadcast(net.params());
  reducer_.broadcast(net.state());
  for (size_t i = 0; i < optimizer_->slot_names().size(); ++i) reducer_.broadcast(optimizer_->slot(i));
  // FNV-1a over every byte a step depends on.
  uint64_t h = 1469598103934665603ull;
  auto add = [&](const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  add(net.params().data(), net.params().size_bytes());
  add(net.state().data(), net.state().size_bytes());
  for (size_t i = 0; i < optimizer_->slot_names().size(); ++i)
    add(optimizer_->slot(i).data(), optimizer_->slot(i).size_bytes());
  const int64_t position[] = {optimizer_->step_count(), start_.position.epoch, start_.position.samples, step_};
  add(position, sizeof position);
  add(identity_.normalization.mean.data(), identity_.normalization.mean.size() * sizeof(float));
  add(identity_.normalization.stddev.data(), identity_.normalization.stddev.size() * sizeof(float));
  add(identity_.run_config.data(), identity_.run_config.size());
  reducer_.check_same(h, "parameters, optimizer state, position, settings and data normalization");
}

bool Trainer::stop_requested() {
  // A signal may reach the processes of a data-parallel run between different steps: they stop together.
  const bool signalled = reducer_.any(config_.stop_flag && *config_.stop_flag != 0);
  return signalled || (config_.stop_after_step > 0 && step_ == config_.stop_after_step);
}

bool Trainer::minutes_due() {
  if (!(config_.checkpoint_minutes > 0)) return false;
  return reducer_.any(writes_ && checkpoints_->due_by_clock(step_));
}

// A step whose loss or gradients were not finite made no update. --on-nan stop (and weights that are already
// non-finite, which no skipping can mend) ends the run here with the step and the layer; skip-batch warns and
// the caller counts the step without adding it to the metrics.
void Trainer::on_non_finite(const StepStats& stats, int64_t epoch) {
  char loss[32];
  std::snprintf(loss, sizeof loss, "%g", stats.loss);
  const std::string weights = first_non_finite_param(model_.net);
  const std::string what = "step " + std::to_string(step_ + 1) + " (epoch " + std::to_string(epoch + 1) + "): " +
                           (std::isfinite(stats.loss) ? std::string("a gradient") : "the loss (" + std::string(loss) + ")") +
                           " is not finite; it first appeared in " + stats.non_finite;
  if (config_.on_nan == "stop" || !weights.empty()) {
    const std::string last = checkpoints_->last_path();
    throw NumericError(what + "; no update was made" +
                       (last.empty() ? std::string("") : "; the last good checkpoint is " + last) +
                       (config_.on_nan == "stop" ? " (lower --lr, or --on-nan skip-batch)" : ""));
  }
  metrics_->clear_bar();
  std::cerr << "warning: " << what << "; --on-nan skip-batch: the step makes no update\n";
}

TrainResult Trainer::stopped(int64_t epoch_in_progress) {
  result_.stopped = true;
  result_.stopped_epoch = epoch_in_progress;
  result_.steps = step_;
  result_.checkpoint_path = checkpoints_->last_path();
  return result_;
}

TrainResult Trainer::run() {
  const RunPosition& start = start_.position;
  for (int64_t epoch = start.epoch; epoch < config_.epochs; ++epoch) {
    const int64_t first = epoch == start.epoch ? start.samples / config_.batch : 0;
    if (!run_epoch(epoch, first)) {
      if (writes_ && metrics_->bar()) log_ << "\n";
      return stopped(epoch + 1);
    }
    if (!finish_epoch(epoch, first)) return stopped(epoch + 2);
  }
  if (start.epoch >= config_.epochs && writes_)
    log_ << "stride: the checkpoint has done all " << config_.epochs << " epochs already\n";
  if (writes_) result_.final_path = checkpoints_->save_final(RunPosition{config_.epochs, 0, step_});
  const double total = clock_.seconds() - start_.wall_time;
  char text[160];
  std::snprintf(text, sizeof text, "stride: checkpoints took %.2f s of %.1f s (%.2f%%)\n", checkpoints_->seconds(),
                total, 100.0 * checkpoints_->seconds() / std::max(total, 1e-9));
  if (writes_) log_ << text;
  if (writes_ && !reducer_.summary().empty()) log_ << reducer_.summary() << "\n";
  result_.steps = step_;
  result_.checkpoint_path = checkpoints_->last_path();
  return result_;
}

bool Trainer::run_epoch(int64_t epoch, int64_t first) {
  const auto e32 = static_cast<uint32_t>(epoch);
  const std::vector<int64_t> order = epoch_order(train_count_, config_.seed, e32, true);
  const int64_t batch = config_.batch;
  auto step_count = [&](int64_t s) { return std::min(batch, train_count_ - s * batch); };
  // This process's samples of step s, in epoch order.
  auto local_indices = [&](int64_t s) {
    const SampleRange mine = training_step_.local_samples(step_count(s));
    return std::span<const int64_t>(order).subspan(static_cast<size_t>(s * batch + mine.first),
                                                    static_cast<size_t>(mine.count));
  };
  // Two batch buffers: the next batch is assembled by TBB tasks while the current one trains.
  Tensor xs[2];
  std::vector<int32_t> ys[2];
  train_batches_->assemble(local_indices(first), e32, xs[first & 1], ys[first & 1]);
  metrics_->start_epoch(first);
  for (int64_t s = first; s < steps_per_epoch_; ++s) {
    const int cur = static_cast<int>(s & 1);
    std::future<void> next;
    if (s + 1 < steps_per_epoch_)
      next = std::async(std::launch::async,
                        [&, s] { train_batches_->assemble(local_indices(s + 1), e32, xs[1 - cur], ys[1 - cur]); });
    const double lr = lr_at(identity_.schedule, step_);
    RunContext ctx{Mode::train, config_.seed, e32, s * batch};
    ctx.precision = config_.precision;
    reducer_.begin_step(step_ + 1);
    const StepStats stats = training_step_.run(xs[cur], ys[cur], step_count(s), ctx, lr);
    if (next.valid()) next.get();
    if (!stats.finite) {
      on_non_finite(stats, epoch);
      ++step_;  // the step made no update, and its statistics stay out of the metrics
    } else {
      ++step_;
      result_.final_loss = stats.loss;
      metrics_->add_step(stats, place(epoch, s), lr, config_.log_every);
    }
    // A checkpoint due at the epoch's last step waits for the test evaluation, so it is taken at the boundary.
    if (s + 1 == steps_per_epoch_) break;
    const bool stop = stop_requested();
    const bool timed = minutes_due();
    if (writes_ && (stop || timed || checkpoints_->due_after_step(step_)))
      checkpoints_->save(RunPosition{epoch, (s + 1) * batch, step_}, stop);
    if (stop) return false;
  }
  return true;
}

bool Trainer::finish_epoch(int64_t epoch, int64_t first) {
  const EvalResult test =
      evaluate(model_.net, *test_batches_, config_.eval_batch, model_.net.output_shape().numel(), reducer_,
               config_.precision);
  metrics_->end_epoch(place(epoch, steps_per_epoch_ - 1), train_count_, train_count_ - first * config_.batch, test,
                      lr_at(identity_.schedule, step_ - 1));
  result_.test_accuracy = test.accuracy();
  const bool last = epoch + 1 == config_.epochs;
  const bool stop = stop_requested();
  const bool timed = minutes_due();
  if (writes_ && (stop || last || timed || checkpoints_->due_after_epoch(epoch, step_)))
    checkpoints_->save(RunPosition{epoch + 1, 0, step_}, stop || last);
  return !stop || last;
}

}  // namespace

TrainResult train(const TrainConfig& config, std::ostream& log, GradientReducer& reducer) {
  // The checkpoint first: a resume takes the settings it was not given from there, and a missing or corrupt
  // checkpoint fails before any data is read.
  std::optional<ResumePoint> resume = find_resume(config);
  TrainConfig resolved = resume ? with_stored_settings(config, resume->checkpoint, resume->path) : config;
  validate(resolved);
  resolved.micro_batch = resolve_micro_batch(resolved.batch, resolved.micro_batch, reducer.processes());
  return Trainer(resolved, std::move(resume), log, reducer).run();
}

TrainResult train(const TrainConfig& config, std::ostream& log) {
  LocalGradientReducer local;
  return train(config, log, local);
}

}  // namespace stride
