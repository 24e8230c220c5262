#pragma once
// The seam between the training loop and data parallelism. A step is cut into micro-batches whose make-up
// depends only on --batch and --micro-batch; the reducer says which of them this process computes, sums
// their gradients over every process exactly (framework/exact_sum.hpp), hands every micro-batch's per-step
// values (loss, correct predictions, batch-norm statistics) to every process in micro-batch order, and makes
// only one process write output. One process (LocalGradientReducer) computes everything and has nothing to
// exchange; the data-parallel reducer (cluster/) runs the same calls over MPI, so the result of a step does
// not depend on the number of processes.
//
// Calls in one step of more than one micro-batch, or of any step when processes() > 1 (TrainingStep):
//   begin_step(step)                     the trainer, before the step
//   begin_sum(sum, grads)                before this process's first micro-batch
//   ... forward, backward of each micro-batch; during the backward of the last one:
//   ready(from), poll()                  after every layer: gradients [from, end) are final
//   gather(...)                          every micro-batch's per-step values, in micro-batch order
//   reduce()                             the step's exact gradient sum, the same bits on every process
// Every process makes the same calls in the same order (the MPI collectives behind them require it).
#include <cstdint>
#include <span>
#include <string>

#include "framework/exact_sum.hpp"

namespace stride {

// Items [first, first + count) of a list (a step's micro-batches, the test set's evaluation batches).
struct MicroBatchRange {
  int64_t first = 0, count = 0;
};

// Process `index` of `processes`'s contiguous share of `items`: the first items % processes processes get
// one more than the rest. Some get none when items < processes.
MicroBatchRange contiguous_share(int64_t items, int64_t processes, int64_t index);

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual int64_t processes() const = 0;
  // Which of `items` micro-batches (or evaluation batches) this process computes; over all processes the
  // shares cover every item exactly once, in order.
  virtual MicroBatchRange share(int64_t items) const = 0;
  // Global step `step` (1-based) is about to run.
  virtual void begin_step(int64_t /*step*/) {}

  // The step's gradients: `sum` holds this process's micro-batch gradients (ExactSum::keep, set_live) and
  // stays valid until reduce() returns; `grads` (the network's gradient buffer) receives the step's sum,
  // bucket by bucket, possibly while backward still writes the parts that are not final yet.
  virtual void begin_sum(ExactSum& sum, std::span<float> grads) = 0;
  // Backward of this process's last micro-batch has made gradients [from, end of buffer) final; a process
  // without micro-batches calls ready(0) at once.
  virtual void ready(int64_t /*from*/) {}
  // Between layers of that backward: a chance to move communication along.
  virtual void poll() {}
  // On return, the gradient buffer of begin_sum holds the exact sum over every micro-batch of the step, the
  // same bits on every process.
  virtual void reduce() = 0;

  // Rows of `width` values, one per item (micro-batch or evaluation batch) of `items`: `mine` holds the rows
  // of share(items); on return `all` holds every row in item order.
  virtual void gather(std::span<const double> mine, std::span<double> all, int64_t width, int64_t items) = 0;
  // Whether any process says yes (a stop request seen by some of them).
  virtual bool any(bool mine) = 0;
  // At the start of a run: `values` takes process 0's contents on every process.
  virtual void broadcast(std::span<float> /*values*/) {}
  // Throws Error, naming the processes that differ from process 0, unless every process passes the same
  // checksum of `what`.
  virtual void check_same(uint64_t /*checksum*/, const std::string& /*what*/) {}
  // A line for the end of a run about what the exchanges cost (empty: nothing to say).
  virtual std::string summary() const { return {}; }
  // Whether this process writes what a run writes: the progress line, metrics.jsonl and checkpoints.
  virtual bool writes_output() const = 0;
};

// One process: every micro-batch here; the exact sum needs no exchange.
class LocalGradientReducer final : public GradientReducer {
 public:
  int64_t processes() const override { return 1; }
  MicroBatchRange share(int64_t items) const override { return {0, items}; }
  void begin_sum(ExactSum& sum, std::span<float> grads) override {
    sum_ = &sum;
    grads_ = grads;
  }
  void reduce() override;
  void gather(std::span<const double> mine, std::span<double> all, int64_t width, int64_t items) override;
  bool any(bool mine) override { return mine; }
  bool writes_output() const override { return true; }

 private:
  ExactSum* sum_ = nullptr;
  std::span<float> grads_;
};

}  // namespace stride
