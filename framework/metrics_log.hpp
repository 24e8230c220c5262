#pragma once
// What a run reports while it trains: RUN_DIR/metrics.jsonl (one JSON object per line: "step" lines every
// --log-every steps and at the end of an epoch, one "epoch" line per epoch) and the same numbers on the
// terminal, as a live progress bar when stdout is one, else as plain lines.
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "framework/evaluation.hpp"
#include "framework/train_config.hpp"
#include "framework/training_step.hpp"
#include "io/checkpoint.hpp"

namespace stride {

// Seconds of training across resumes: the checkpoint's wall_time plus the time since this process started.
class RunClock {
 public:
  using Clock = std::chrono::steady_clock;
  // Seconds trained before this process started (a resumed run's checkpoint wall_time).
  void set_offset(double seconds) { offset_ = seconds; }
  double seconds() const { return offset_ + since(start_); }
  static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

 private:
  double offset_ = 0;
  Clock::time_point start_ = Clock::now();
};

// Where a step is: its epoch (0-based) of `epochs`, its index in the epoch of `steps_per_epoch`, and the
// global step count after it.
struct StepPlace {
  int64_t epoch, epochs, step_in_epoch, steps_per_epoch, global_step;
};

class MetricsLog {
 public:
  // Opens run_dir/metrics.jsonl: emptied for a new run; for a run resumed after `resumed_at` steps, cut back to
  // the lines up to that step (dropping a killed run's half-written last line) and appended to. When `writes`
  // is false (a process that writes no output) nothing is opened or printed; the sums are still kept.
  // `display` (bar, lines or none) is how step lines reach `log`; metrics.jsonl gets them all the same.
  MetricsLog(const std::string& run_dir, std::optional<int64_t> resumed_at, ProgressDisplay display, bool writes,
             std::ostream& log, const RunClock& clock);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // The sums of the epoch in progress, which a checkpoint stores and a resumed run restores.
  TrainingProgress& progress() { return progress_; }
  const std::string& path() const { return path_; }
  bool bar() const { return display_ == ProgressDisplay::bar; }
  // What every epoch line records about how the run is spread: processes, the micro-batch size, the hosts.
  void set_run_shape(int64_t processes, int64_t micro_batch, std::vector<std::string> hosts);

  // Starts the timers of an epoch whose first step this process runs is `first_step` (not 0 after a resume).
  void start_epoch(int64_t first_step);
  // Adds a step's statistics; writes a step line every log_every steps and after the epoch's last step.
  void add_step(const StepStats& stats, const StepPlace& place, double lr, int64_t log_every);
  // Writes the epoch line and prints its summary; then starts the sums of the next epoch. `samples` is the
  // epoch's training samples, `session_samples` those this session trained (fewer after a mid-epoch resume),
  // `lr` the rate of the epoch's last step.
  void end_epoch(const StepPlace& place, int64_t samples, int64_t session_samples, const EvalResult& test, double lr);
  // Erases a live progress bar so that another message starts on a clean line.
  void clear_bar();
  // Every line is written to the operating system as it is logged; this fsyncs them, before a checkpoint that
  // has seen them is written.
  void flush();

 private:
  void write_line(const std::string& text);

  std::string path_;
  int fd_ = -1;
  ProgressDisplay display_;
  bool writes_;
  std::ostream& log_;
  const RunClock& clock_;
  TrainingProgress progress_;
  RunClock::Clock::time_point epoch_start_, window_start_;
  int64_t first_step_ = 0;
  int64_t processes_ = 1, micro_batch_ = 0;
  std::vector<std::string> hosts_;
};

}  // namespace stride
