#include "framework/evaluation.hpp"

#include <algorithm>
#include <span>

#include "layers/softmax_cross_entropy.hpp"

namespace stride {

EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes) {
  LocalGradientReducer local;
  return evaluate(net, data, batch, num_classes, local);
}

EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes,
                    GradientReducer& reducer, Precision precision) {
  EvalResult r;
  const int64_t n = data.source().info().count;
  const int64_t batches = (n + batch - 1) / batch;
  // One process counts the confusion matrix directly; several gather it per batch (small matrices only).
  const bool local = reducer.processes() == 1;
  const bool gathered = !local && num_classes <= kGatheredConfusionClasses;
  const auto k2 = static_cast<size_t>(num_classes * num_classes);
  if (local) r.confusion.assign(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  // Per batch: its loss sum, its correct count, then (when gathered) its confusion matrix.
  const int64_t width = 2 + (gathered ? num_classes * num_classes : 0);
  const MicroBatchRange mine = reducer.share(batches);
  std::vector<double> rows(static_cast<size_t>(mine.count * width), 0.0), all(static_cast<size_t>(batches * width));
  const std::vector<int64_t> order = epoch_order(n, 0, 0, false);
  Tensor x;
  std::vector<int32_t> labels;
  RunContext ctx{Mode::eval, 0, 0, 0};
  ctx.precision = precision;
  for (int64_t b = 0; b < mine.count; ++b) {
    const int64_t first = (mine.first + b) * batch;
    const int64_t count = std::min(batch, n - first);
    data.assemble(std::span<const int64_t>(order).subspan(static_cast<size_t>(first), static_cast<size_t>(count)), 0,
                  x, labels);
    const Tensor& logits = net.forward(x, ctx);
    double* row = rows.data() + b * width;
    row[0] = softmax_cross_entropy(logits, labels, nullptr) * static_cast<double>(count);
    const int64_t k = logits.shape().per_sample();
    for (int64_t i = 0; i < count; ++i) {
      const float* out = logits.data() + i * k;
      const int64_t pred = std::max_element(out, out + k) - out;
      const int32_t truth = labels[static_cast<size_t>(i)];
      if (pred == truth) row[1] += 1;
      if (truth >= num_classes || pred >= num_classes) continue;
      if (local) ++r.confusion[static_cast<size_t>(truth)][static_cast<size_t>(pred)];
      if (gathered) row[2 + truth * num_classes + pred] += 1;
    }
  }
  reducer.gather(rows, all, width, batches);
  double loss_sum = 0;
  std::vector<double> confusion(gathered ? k2 : 0, 0.0);
  for (int64_t b = 0; b < batches; ++b) {
    const double* row = all.data() + b * width;
    loss_sum += row[0];
    r.correct += static_cast<int64_t>(row[1]);
    for (size_t i = 0; i < confusion.size(); ++i) confusion[i] += row[2 + i];
  }
  if (gathered) {
    r.confusion.assign(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
    for (int64_t t = 0; t < num_classes; ++t)
      for (int64_t p = 0; p < num_classes; ++p)
        r.confusion[static_cast<size_t>(t)][static_cast<size_t>(p)] =
            static_cast<int64_t>(confusion[static_cast<size_t>(t * num_classes + p)]);
  }
  r.count = n;
  r.loss = n ? loss_sum / static_cast<double>(n) : 0.0;
  return r;
}

}  // namespace stride
