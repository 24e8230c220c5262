#pragma once
// The training loop behind `stride train` and the evaluation behind `stride eval`.
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
  std::string out = "runs/latest";
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
};

struct TrainResult {
  double test_accuracy = 0;
  double final_loss = 0;
  int64_t steps = 0;
  std::string final_path, metrics_path;
};

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
