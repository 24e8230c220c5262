#pragma once
// When a run saves a checkpoint and what goes in it (docs/checkpoint.md): every --checkpoint-epochs epochs
// and every --checkpoint-every steps, on a stop request, and at the end (final.h5). A periodic checkpoint
// that fails (a full disk) is reported and training goes on: the earlier ones are intact and the next may
// succeed once space is freed. One that a stop or the end of the run depends on ends the run with the error.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "framework/input_pipeline.hpp"
#include "framework/lr_schedule.hpp"
#include "framework/metrics_log.hpp"
#include "framework/network.hpp"
#include "framework/optimizer.hpp"
#include "framework/train_config.hpp"
#include "io/checkpoint_dir.hpp"

namespace stride {

// What every checkpoint of a run repeats, besides the network and optimizer state.
struct RunIdentity {
  std::string model_spec;  // with its "input" filled in
  std::string run_config;  // run_config_json()
  uint64_t seed = 0;
  Normalization normalization;
  std::vector<std::string> class_names;
  ScheduleOptions schedule;  // for the informational next_lr
};

// The place of the next step: `samples` into epoch `epoch` (0-based), after `step` global steps.
struct RunPosition {
  int64_t epoch = 0, samples = 0, step = 0;
};

class CheckpointPolicy {
 public:
  CheckpointPolicy(const TrainConfig& config, RunIdentity identity, const Network& net, const Optimizer& optimizer,
                   MetricsLog& metrics, const RunClock& clock, std::ostream& log);

  // Whether the step that just made `step` global steps ends with a checkpoint (besides stops and epoch ends).
  bool due_after_step(int64_t step) const { return every_steps_ && step % every_steps_ == 0; }
  // Whether the end of epoch `epoch` (0-based) after `step` global steps is a checkpoint.
  bool due_after_epoch(int64_t epoch, int64_t step) const {
    return due_after_step(step) || (every_epochs_ && (epoch + 1) % every_epochs_ == 0);
  }
  // Whether --checkpoint-minutes have passed since the last checkpoint (or the start of this process) on this
  // process's clock, `step` being the global steps done (the test clock, TrainConfig::test_step_seconds,
  // counts steps). Only process 0's answer counts: the trainer shares it with every process.
  bool due_by_clock(int64_t step) const;
  // The minutes count from now, at global step `step` (the start of training in this process).
  void start_clock(int64_t step) {
    last_time_ = RunClock::Clock::now();
    last_step_ = step;
  }
  // Saves RUN_DIR/checkpoints/step-<step>.h5 (keeping the newest --keep) after flushing metrics.jsonl, which
  // must hold every line the checkpoint has seen before the checkpoint exists.
  void save(const RunPosition& next, bool required);
  // Writes RUN_DIR/final.h5; returns its path.
  std::string save_final(const RunPosition& next);

  const std::string& last_path() const { return last_path_; }  // empty when none was written
  double seconds() const { return seconds_; }                   // spent writing checkpoints

 private:
  Checkpoint make(const RunPosition& next) const;

  RunIdentity identity_;
  const Network& net_;
  const Optimizer& optimizer_;
  MetricsLog& metrics_;
  const RunClock& clock_;
  std::ostream& log_;
  CheckpointDir dir_;
  int64_t every_steps_, every_epochs_, keep_;
  double every_seconds_, test_step_seconds_;
  RunClock::Clock::time_point last_time_ = RunClock::Clock::now();  // of the last checkpoint (or the start)
  int64_t last_step_ = 0;
  std::string last_path_;
  double seconds_ = 0;
};

}  // namespace stride
