#pragma once
// Accuracy, loss and the confusion matrix of a network over a dataset, in eval mode.
#include <cstdint>
#include <vector>

#include "framework/gradient_reducer.hpp"
#include "framework/input_pipeline.hpp"
#include "framework/network.hpp"

namespace stride {

struct EvalResult {
  int64_t count = 0, correct = 0;
  double loss = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  double accuracy() const { return count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

// Evaluates in eval mode over every sample of the assembler's source, in order, `batch` at a time.
EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes);

// The same spread over the reducer's processes: each evaluates its share of the batches, and the per-batch
// sums are gathered and added in batch order, so every process gets the one-process result, bit for bit.
// The confusion matrix is gathered only for up to kGatheredConfusionClasses classes (empty above).
inline constexpr int64_t kGatheredConfusionClasses = 64;
// `precision`: that of the training run (bf16 evaluates as autocast does).
EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes,
                    GradientReducer& reducer, Precision precision = Precision::fp32);

}  // namespace stride
