#pragma once
// The seam between backward and the optimizer step. A training step runs this process's share of the step's
// micro-batches, adds up their gradients, and hands the sum to reduce(); what reduce() leaves in the buffer
// is what the optimizer applies. One process (LocalGradientReducer) computes every micro-batch and has
// nothing to add; a data-parallel reducer (cluster/) splits the micro-batches over processes and sums across
// them, and makes only one process write output.
#include <cstdint>
#include <span>

namespace stride {

// Micro-batches [first, first + count) of a step.
struct MicroBatchRange {
  int64_t first = 0, count = 0;
};

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Which of a step's `micro_batches` this process computes. Over all processes the shares cover every
  // micro-batch exactly once.
  virtual MicroBatchRange share(int64_t micro_batches) const = 0;
  // grads: the sum of the gradients of this process's micro-batches. On return: the sum over every
  // micro-batch of the step, the same bits on every process.
  virtual void reduce(std::span<float> grads) = 0;
  // Sums per-step statistics (loss, correct predictions) over the processes, in place.
  virtual void reduce_statistics(std::span<double> values) = 0;
  // Whether this process writes what a run writes: the progress line, metrics.jsonl and checkpoints.
  virtual bool writes_output() const = 0;
};

// One process computes every micro-batch: the gradient sum is already complete.
class LocalGradientReducer final : public GradientReducer {
 public:
  MicroBatchRange share(int64_t micro_batches) const override { return {0, micro_batches}; }
  void reduce(std::span<float> /*grads*/) override {}
  void reduce_statistics(std::span<double> /*values*/) override {}
  bool writes_output() const override { return true; }
};

}  // namespace stride
