#pragma once
// The training loop behind `stride train` and the evaluation behind `stride eval`.
#include <csignal>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "framework/input_pipeline.hpp"
#include "framework/lr_schedule.hpp"
#include "framework/network.hpp"
#include "framework/optimizer.hpp"

namespace stride {

struct TrainConfig {
  std::string model = "lenet5";  // zoo name or spec file
  std::string data;              // CIFAR-10 / IDX directory or HDF5 file
  std::string out = "runs/latest";  // empty with `resume`: the run directory of the checkpoint
  int64_t epochs = 5;            // total, counting epochs done before a resume
  int64_t batch = 64;
  double lr = 0.01;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;      // base_lr, total_steps and steps_per_epoch are filled in by train()
  uint64_t seed = 1;
  std::string augment = "auto";  // auto = crop-flip for 3x32x32 data, none otherwise
  std::string init_weights;      // start from these parameters (a checkpoint or final.h5)
  int64_t log_every = 50;        // steps between metrics lines
  int64_t eval_batch = 500;
  int64_t limit_train = 0;       // use only the first N training samples (0 = all)
  int64_t limit_test = 0;
  std::vector<std::string> class_names;  // overrides the data's names (Fashion-MNIST)
  bool progress = true;          // a live progress bar when stdout is a terminal

  // Checkpoints (docs/checkpoint.md): RUN_DIR/checkpoints/step-<step>.h5, the newest `keep` kept.
  std::string resume;              // continue from this run directory or checkpoint file
  int64_t checkpoint_every = 0;    // steps between checkpoints (0 = none by steps)
  int64_t checkpoint_epochs = 1;   // epochs between checkpoints (0 = none by epochs)
  int64_t keep = 3;
  // Polled between steps; when it becomes non-zero the run finishes the step, writes a checkpoint and
  // returns with TrainResult::stopped (set by the SIGTERM/SIGINT handler of `stride train`).
  const volatile std::sig_atomic_t* stop_flag = nullptr;
  int64_t stop_after_step = 0;     // tests: behave as if stopped by a signal right after this global step
};

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

// The run settings a checkpoint stores as JSON (attribute run_config), for `--resume` to compare.
// `schedule` is the filled-in schedule, `augment` the resolved augmentation, `train_count` the samples used.
std::string run_config_json(const TrainConfig& config, const ScheduleOptions& schedule, const std::string& augment,
                            int64_t train_count);

// Every setting of `current` that differs from `stored` and would change the resumed run ("--lr 0.1
// (checkpoint: 0.01)"); empty when the run can continue. The data path, --epochs (unless the schedule depends
// on it), --log-every, --eval-batch and --limit-test may differ.
std::vector<std::string> run_config_differences(const std::string& stored, const std::string& current);

TrainResult train(const TrainConfig& config, std::ostream& log);

struct EvalResult {
  int64_t count = 0, correct = 0;
  double loss = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  double accuracy() const { return count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

// Evaluates in eval mode over every sample of the assembler's source, in order.
EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes);

}  // namespace stride
