#include "layers/softmax_cross_entropy.hpp"

#include <cmath>
#include <string>

#include "framework/core/errors.hpp"

namespace stride {
namespace {

struct Rows {
  int64_t N, K;
};

Rows logit_rows(const char* what, const Shape& s) {
  const bool ok = s.rank == 2 || (s.rank == 4 && s[2] == 1 && s[3] == 1);
  if (!ok || s[1] <= 0)
    throw ShapeError(std::string(what) + ": expected logits (N, K) or (N, K, 1, 1), got " + s.str());
  return {s[0], s[1]};
}

void check_labels(const char* what, const Rows& r, std::span<const int32_t> labels) {
  if (static_cast<int64_t>(labels.size()) != r.N)
    throw ShapeError(std::string(what) + ": expected " + std::to_string(r.N) + " labels for " + std::to_string(r.N) +
                     " rows of logits, got " + std::to_string(labels.size()));
  for (int64_t n = 0; n < r.N; ++n) {
    const int32_t l = labels[static_cast<size_t>(n)];
    if (l < 0 || l >= r.K)
      throw ConfigError(std::string(what) + ": label of sample " + std::to_string(n) + " is " + std::to_string(l) +
                        ", outside [0, " + std::to_string(r.K) + ")");
  }
}

// One row: z (K) -> its max and log(sum exp(z - max)).
void row_lse(const float* z, int64_t K, float& max, double& log_sum) {
  max = z[0];
  for (int64_t k = 1; k < K; ++k) max = z[k] > max ? z[k] : max;
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(z[k] - max));
  log_sum = std::log(s);
}

}  // namespace

// logits: (N, K), labels: (N) -> loss sum / mean_over; dlogits: (N, K). Serial: N*K is a few thousand values at most
// and the sum over the batch is then in a fixed order.
double softmax_cross_entropy(const Tensor& logits, std::span<const int32_t> labels, Tensor* dlogits,
                             int64_t mean_over) {
  const Rows r = logit_rows("softmax_cross_entropy", logits.shape());
  check_labels("softmax_cross_entropy", r, labels);
  if (mean_over < 0 || (mean_over > 0 && mean_over < r.N))
    throw ShapeError("softmax_cross_entropy: the mean is over " + std::to_string(mean_over) +
                     " samples, fewer than the batch's " + std::to_string(r.N));
  if (dlogits) dlogits->resize(logits.shape());
  const double inv_n = 1.0 / static_cast<double>(mean_over ? mean_over : r.N);
  double total = 0.0;
  for (int64_t n = 0; n < r.N; ++n) {
    const float* z = logits.data() + n * r.K;
    float max;
    double log_sum;
    row_lse(z, r.K, max, log_sum);
    const int32_t label = labels[static_cast<size_t>(n)];
    total += log_sum - static_cast<double>(z[label] - max);
    if (dlogits) {
      float* d = dlogits->data() + n * r.K;
      for (int64_t k = 0; k < r.K; ++k) {
        const double p = std::exp(static_cast<double>(z[k] - max) - log_sum);
        d[k] = static_cast<float>((p - (k == label ? 1.0 : 0.0)) * inv_n);
      }
    }
  }
  return total * inv_n;
}

int64_t count_correct(const Tensor& logits, std::span<const int32_t> labels) {
  const Rows r = logit_rows("count_correct", logits.shape());
  if (static_cast<int64_t>(labels.size()) != r.N)
    throw ShapeError("count_correct: expected " + std::to_string(r.N) + " labels, got " + std::to_string(labels.size()));
  int64_t correct = 0;
  for (int64_t n = 0; n < r.N; ++n) {
    const float* z = logits.data() + n * r.K;
    int64_t best = 0;
    for (int64_t k = 1; k < r.K; ++k)
      if (z[k] > z[best]) best = k;
    if (best == labels[static_cast<size_t>(n)]) ++correct;
  }
  return correct;
}

void softmax(const Tensor& logits, Tensor& probs) {
  const Rows r = logit_rows("softmax", logits.shape());
  probs.resize(logits.shape());
  for (int64_t n = 0; n < r.N; ++n) {
    const float* z = logits.data() + n * r.K;
    float* p = probs.data() + n * r.K;
    float max;
    double log_sum;
    row_lse(z, r.K, max, log_sum);
    for (int64_t k = 0; k < r.K; ++k) p[k] = static_cast<float>(std::exp(static_cast<double>(z[k] - max) - log_sum));
  }
}

}  // namespace stride
