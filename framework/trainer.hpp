#pragma once
// The training loop behind `stride train`: run setup (framework/run_setup), one step at a time
// (framework/training_step, with its GradientReducer seam), the metrics log (framework/metrics_log), the
// checkpoint policy (framework/checkpoint_policy) and the test evaluation after every epoch
// (framework/evaluation).
#include <cstdint>
#include <iosfwd>
#include <string>

#include "framework/gradient_reducer.hpp"
#include "framework/train_config.hpp"

namespace stride {

struct TrainResult {
  double test_accuracy = 0;
  double final_loss = 0;
  int64_t steps = 0;
  std::string final_path, metrics_path;
  std::string run_dir;
  bool stopped = false;          // stopped early by stop_flag / stop_after_step
  int64_t stopped_epoch = 0;     // the epoch in progress (1-based) when it stopped
  std::string checkpoint_path;   // the newest checkpoint written (empty when none)
};

// Trains as `config` says. `reducer` decides which micro-batches of every step this process computes, sums
// gradients across processes, and whether this process writes the log, metrics and checkpoints.
TrainResult train(const TrainConfig& config, std::ostream& log, GradientReducer& reducer);
// One process: every micro-batch here (LocalGradientReducer).
TrainResult train(const TrainConfig& config, std::ostream& log);

}  // namespace stride
