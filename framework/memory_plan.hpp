#pragma once
// The memory a run will need, computed from shapes before anything is allocated, and checked against
// --max-memory (framework/core/limits.hpp): a spec edited to billions of parameters, or --batch 1000000000,
// is refused with the numbers instead of ending in std::bad_alloc or in swap.
#include <cstdint>
#include <string>

#include "framework/network.hpp"
#include "framework/optimizer.hpp"

namespace stride {

// Labels are uint8, so a classifier has at most 256 useful outputs; more than this many is refused before
// a name is made for each (and before eval's K x K confusion matrix).
inline constexpr int64_t kMaxClasses = 4096;

struct MemoryPlan {
  // Bytes of each part; -1 when the part overflowed int64.
  int64_t params = 0;       // learnable values
  int64_t grads = 0;        // their gradients
  int64_t state = 0;        // batch-norm running statistics
  int64_t optimizer = 0;    // momentum buffers, Adam moments
  int64_t activations = 0;  // layer outputs, their gradients and per-layer scratch for one batch
  int64_t data = 0;         // a dataset held in memory
  // The sum, or -1 when it (or a part) overflowed.
  int64_t total() const;
  // "params 1.6 MiB + grads 1.6 MiB + optimizer 1.6 MiB + activations 12.0 MiB + data 47.0 MiB".
  std::string describe() const;
};

// Momentum buffers and Adam moments per learnable value: 0 for plain SGD, 1 with momentum, 2 for Adam(W).
int64_t optimizer_slot_count(const OptimizerOptions& options);

// Training `batch` samples at a time: parameters, gradients, state, optimizer slots, and for each layer its
// output, the output's gradient and as much again for scratch (im2col columns, max-pool indices, dropout
// masks, batch-norm statistics), plus the two input batches of the double-buffered loader.
MemoryPlan plan_training(const Network& net, int64_t batch, int64_t optimizer_slots, int64_t data_bytes);
// Forward passes only (eval, predict): parameters, state, outputs and scratch.
MemoryPlan plan_inference(const Network& net, int64_t batch, int64_t data_bytes);

// Throws ResourceError "<what>: needs N bytes (...) = <describe()>, over the --max-memory limit of M" when
// the plan's total exceeds memory_limit().
void check_plan(const MemoryPlan& plan, const std::string& what);

}  // namespace stride
