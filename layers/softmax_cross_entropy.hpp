#pragma once
// Softmax cross-entropy loss, as torch.nn.CrossEntropyLoss (mean reduction): free functions, not a layer,
// because the loss ends the graph and takes integer labels. Logits are (N, K) or (N, K, 1, 1).
#include <cstdint>
#include <span>

#include "framework/core/tensor.hpp"

namespace stride {

// The sum over the batch of -log softmax(logits[n])[labels[n]], divided by `mean_over` (0: the batch size N,
// so it is the mean), computed stably (row max subtracted, log-sum-exp in double). When dlogits is not null it
// is resized to the logits' shape and overwritten with the gradient of that: (softmax - onehot) / mean_over.
// A micro-batch of a larger step passes the step's sample count, so its loss and gradients add up to the
// step's mean. Throws ShapeError for a bad logits shape or label count and ConfigError naming the sample and
// the label for a label outside [0, K).
double softmax_cross_entropy(const Tensor& logits, std::span<const int32_t> labels, Tensor* dlogits,
                             int64_t mean_over = 0);

// Number of samples whose argmax (the first maximum on ties) equals the label.
int64_t count_correct(const Tensor& logits, std::span<const int32_t> labels);

// probs is resized to the logits' shape and overwritten with the row-wise softmax.
void softmax(const Tensor& logits, Tensor& probs);

}  // namespace stride
