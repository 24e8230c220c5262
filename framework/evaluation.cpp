#include "framework/evaluation.hpp"

#include <algorithm>
#include <span>

#include "layers/softmax_cross_entropy.hpp"

namespace stride {

EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes) {
  EvalResult r;
  const int64_t n = data.source().info().count;
  r.confusion.assign(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  const std::vector<int64_t> order = epoch_order(n, 0, 0, false);
  Tensor x;
  std::vector<int32_t> labels;
  const RunContext ctx{Mode::eval, 0, 0, 0};
  double loss_sum = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t count = std::min(batch, n - first);
    data.assemble(std::span<const int64_t>(order).subspan(static_cast<size_t>(first), static_cast<size_t>(count)), 0,
                  x, labels);
    const Tensor& logits = net.forward(x, ctx);
    loss_sum += softmax_cross_entropy(logits, labels, nullptr) * static_cast<double>(count);
    const int64_t k = logits.shape().per_sample();
    for (int64_t i = 0; i < count; ++i) {
      const float* row = logits.data() + i * k;
      const int64_t pred = std::max_element(row, row + k) - row;
      const int32_t truth = labels[static_cast<size_t>(i)];
      if (pred == truth) ++r.correct;
      if (truth < num_classes && pred < num_classes) ++r.confusion[static_cast<size_t>(truth)][static_cast<size_t>(pred)];
    }
  }
  r.count = n;
  r.loss = n ? loss_sum / static_cast<double>(n) : 0.0;
  return r;
}

}  // namespace stride
