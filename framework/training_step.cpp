#include "framework/training_step.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "framework/core/errors.hpp"
#include "framework/numeric_check.hpp"
#include "layers/softmax_cross_entropy.hpp"

namespace stride {

TrainingStep::TrainingStep(Network& net, Optimizer& optimizer, GradientReducer& reducer, int64_t micro_batch)
    : net_(net), optimizer_(optimizer), reducer_(reducer), micro_batch_(micro_batch) {
  if (micro_batch < 0) throw UsageError("--micro-batch: expected a value >= 0, got " + std::to_string(micro_batch));
}

int64_t TrainingStep::micro_batches(int64_t step_count) const {
  return micro_batch_ == 0 ? 1 : (step_count + micro_batch_ - 1) / micro_batch_;
}

SampleRange TrainingStep::local_samples(int64_t step_count) const {
  const MicroBatchRange share = reducer_.share(micro_batches(step_count));
  if (micro_batch_ == 0) return share.count ? SampleRange{0, step_count} : SampleRange{0, 0};
  const int64_t first = std::min(step_count, share.first * micro_batch_);
  const int64_t end = std::min(step_count, (share.first + share.count) * micro_batch_);
  return {first, end - first};
}

StepStats TrainingStep::run(const Tensor& x, std::span<const int32_t> labels, int64_t step_count,
                            const RunContext& ctx, double lr) {
  const SampleRange mine = local_samples(step_count);
  if (x.shape().n() != mine.count || static_cast<int64_t>(labels.size()) != mine.count)
    throw ShapeError("training step: expected this process's " + std::to_string(mine.count) + " samples, got " +
                     std::to_string(x.shape().n()) + " images and " + std::to_string(labels.size()) + " labels");
  net_.zero_grad();
  double loss = 0, correct = 0;
  std::string where;
  const int64_t per_sample = x.shape().per_sample();
  const int64_t size = micro_batch_ == 0 ? std::max<int64_t>(mine.count, 1) : micro_batch_;
  for (int64_t first = 0; first < mine.count; first += size) {
    const int64_t count = std::min(size, mine.count - first);
    const Tensor* micro = &x;
    if (count != mine.count) {  // one micro-batch of several: its rows, copied
      micro_x_.resize(x.shape().with_batch(count));
      std::memcpy(micro_x_.data(), x.data() + first * per_sample, static_cast<size_t>(count * per_sample) * sizeof(float));
      micro = &micro_x_;
    }
    RunContext micro_ctx = ctx;
    micro_ctx.first_sample = ctx.first_sample + mine.first + first;
    const auto micro_labels = labels.subspan(static_cast<size_t>(first), static_cast<size_t>(count));
    const Tensor& logits = net_.forward(*micro, micro_ctx);
    const double micro_loss = softmax_cross_entropy(logits, micro_labels, &dlogits_, step_count);
    // Located now, while this micro-batch's outputs are still in the layers.
    if (!std::isfinite(micro_loss) && where.empty()) where = locate_non_finite(net_, /*outputs=*/true, false);
    loss += micro_loss;
    correct += static_cast<double>(count_correct(logits, micro_labels));
    net_.backward(dlogits_, micro_ctx);
  }
  double statistics[2] = {loss, correct};
  reducer_.reduce_statistics(statistics);
  StepStats stats{statistics[0], static_cast<int64_t>(statistics[1]), step_count, std::isfinite(statistics[0]), where};
  if (!stats.finite) {
    if (stats.non_finite.empty()) stats.non_finite = "another process's micro-batch";
    return stats;
  }
  reducer_.reduce(net_.grads());
  // A finite loss can still come with an infinite gradient (an overflow in backward): no update either way.
  if (!all_finite(net_.grads())) {
    stats.finite = false;
    stats.non_finite = locate_non_finite(net_, false, /*grads=*/true);
    return stats;
  }
  optimizer_.step(net_.params(), net_.grads(), lr);
  return stats;
}

}  // namespace stride
