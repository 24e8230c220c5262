#pragma once
// One optimizer step: forward and backward over this process's micro-batches of the step, one after another;
// the exact sum of every micro-batch's gradient over every process (GradientReducer, framework/exact_sum);
// then the optimizer's update.
//
// A step of one micro-batch on one process (--micro-batch equal to the batch) is the plain path: one forward,
// one backward, the float gradient as it comes, batch norm updating its running statistics in its forward.
// Every other step takes the exact path, which gives the same bits whatever the number of processes: each
// micro-batch's gradient is kept apart and the reducer sums them in fixed point; the losses, correct counts
// and batch-norm statistics of the micro-batches are gathered and added in micro-batch order; batch norm
// normalizes each micro-batch with its own statistics ("ghost batch norm") and updates its running statistics
// once per step with their sample-weighted mean.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/core/tensor.hpp"
#include "framework/exact_sum.hpp"
#include "framework/gradient_reducer.hpp"
#include "framework/network.hpp"
#include "framework/optimizer.hpp"

namespace stride {

class BatchNorm;

// Samples per micro-batch when --micro-batch is not given and it divides the batch.
inline constexpr int64_t kDefaultMicroBatch = 16;
// Gradient bucket size when --bucket-mb is not given: megabytes of the int64 fixed-point gradient.
inline constexpr double kDefaultBucketMb = 1.0;

// The micro-batch size of a run: `micro_batch`, or for 0 kDefaultMicroBatch when it divides `batch`, else
// the whole batch. Throws ConfigError (naming the flags) when `micro_batch` does not divide `batch`, or when
// `processes` > 1 and a full step has fewer micro-batches than processes.
int64_t resolve_micro_batch(int64_t batch, int64_t micro_batch, int64_t processes);

// The learnable parameters' ranges of the flat gradient buffer: the segments of the exact sum.
std::vector<SumSegment> learnable_segments(const Network& net);

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
  // batch: samples of a full step; micro_batch: samples per micro-batch (0 or more than the batch: the whole
  // batch); bucket_elements: gradients per bucket of the exact sum.
  TrainingStep(Network& net, Optimizer& optimizer, GradientReducer& reducer, int64_t batch, int64_t micro_batch,
               int64_t bucket_elements = static_cast<int64_t>(kDefaultBucketMb * (1 << 20) / 8));
  ~TrainingStep();

  // The samples of a step of `step_count` samples that this process computes (its share of micro-batches),
  // so that only they are read and assembled.
  SampleRange local_samples(int64_t step_count) const;
  // Whether steps take the exact path (more than one micro-batch per step, or more than one process).
  bool exact() const { return exact_; }
  const ExactSum& exact_sum() const { return sum_; }

  // x, labels: this process's samples of the step (local_samples(step_count)); ctx.first_sample is the epoch
  // index of the step's sample 0, so dropout keys every sample by its place in the epoch. The loss of each
  // micro-batch is divided by step_count, so the gradients add up to those of the step's mean loss.
  StepStats run(const Tensor& x, std::span<const int32_t> labels, int64_t step_count, const RunContext& ctx,
                double lr);

 private:
  int64_t micro_batches(int64_t step_count) const;
  StepStats run_plain(const Tensor& x, std::span<const int32_t> labels, int64_t step_count, const RunContext& ctx,
                      double lr);
  StepStats run_exact(const Tensor& x, std::span<const int32_t> labels, int64_t step_count, const RunContext& ctx,
                      double lr);
  // The batch norms' running statistics from the step's gathered rows (all_rows_), `samples` in all.
  void update_running_statistics(double samples);
  // The update, unless the step's loss or gradients are not finite (then `stats` says where, and nothing
  // changes).
  StepStats finish(StepStats stats, double lr);

  Network& net_;
  Optimizer& optimizer_;
  GradientReducer& reducer_;
  int64_t micro_batch_;
  bool exact_;
  ExactSum sum_;
  std::vector<BatchNorm*> batch_norms_;
  int64_t row_width_;                  // per micro-batch: loss, correct, samples, then each batch norm's statistics
  std::vector<double> rows_, all_rows_, bn_values_;
  Tensor micro_x_, dlogits_;  // reused: a step allocates nothing once they have held a micro-batch
};

}  // namespace stride
