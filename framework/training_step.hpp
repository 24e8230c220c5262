#pragma once
// One optimizer step: forward and backward over this process's micro-batches of the step, one after another,
// their parameter gradients added up in the network's gradient buffer; then GradientReducer::reduce (the
// seam where data-parallel training sums across processes); then the optimizer's update.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "framework/core/tensor.hpp"
#include "framework/gradient_reducer.hpp"
#include "framework/network.hpp"
#include "framework/optimizer.hpp"

namespace stride {

// Samples [first, first + count) of a step.
struct SampleRange {
  int64_t first = 0, count = 0;
};

// What one step saw, summed over every micro-batch of every process.
struct StepStats {
  double loss = 0;          // mean cross-entropy over the step's samples
  int64_t correct = 0;      // training predictions right
  int64_t count = 0;        // samples
  bool finite = true;       // false: the loss or a gradient is NaN or infinite, and no update was made
  std::string non_finite;   // when !finite: where it first appeared (locate_non_finite), e.g. "the output of layer 'conv1'"
};

class TrainingStep {
 public:
  // micro_batch: samples per micro-batch, 0 for one micro-batch of the whole step.
  TrainingStep(Network& net, Optimizer& optimizer, GradientReducer& reducer, int64_t micro_batch);

  // The samples of a step of `step_count` samples that this process computes (its share of micro-batches),
  // so that only they are read and assembled.
  SampleRange local_samples(int64_t step_count) const;

  // x, labels: this process's samples of the step (local_samples(step_count)); ctx.first_sample is the epoch
  // index of the step's sample 0, so dropout keys every sample by its place in the epoch. The loss of each
  // micro-batch is divided by step_count, so the gradients add up to those of the step's mean loss.
  StepStats run(const Tensor& x, std::span<const int32_t> labels, int64_t step_count, const RunContext& ctx,
                double lr);

 private:
  int64_t micro_batches(int64_t step_count) const;

  Network& net_;
  Optimizer& optimizer_;
  GradientReducer& reducer_;
  int64_t micro_batch_;
  Tensor micro_x_, dlogits_;  // reused: a step allocates nothing once they have held a micro-batch
};

}  // namespace stride
