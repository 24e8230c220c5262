#include "framework/training_step.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "framework/core/errors.hpp"
#include "framework/core/trace.hpp"
#include "framework/numeric_check.hpp"
#include "layers/batchnorm.hpp"
#include "layers/softmax_cross_entropy.hpp"

namespace stride {

std::vector<SumSegment> learnable_segments(const Network& net) {
  std::vector<SumSegment> out;
  for (const ParamEntry& e : net.param_entries())
    if (e.role == ParamRole::learnable) out.push_back({e.offset, e.offset + e.size});
  return out;
}

namespace {

constexpr int64_t kFixedColumns = 3;  // loss, correct, samples

}  // namespace

int64_t resolve_micro_batch(int64_t batch, int64_t micro_batch, int64_t processes) {
  if (micro_batch < 0) throw UsageError("--micro-batch: expected a value >= 0, got " + std::to_string(micro_batch));
  int64_t m = micro_batch;
  if (m == 0) m = batch % kDefaultMicroBatch == 0 ? kDefaultMicroBatch : batch;
  if (batch % m != 0)
    throw UsageError("--batch " + std::to_string(batch) + " does not split into micro-batches of " +
                      std::to_string(m) + " (--micro-batch): give a --micro-batch that divides --batch");
  const int64_t per_step = batch / m;
  if (processes > 1 && per_step < processes)
    throw UsageError("--batch " + std::to_string(batch) + " is " + std::to_string(per_step) + " micro-batch" +
                      (per_step == 1 ? "" : "es") + " of " + std::to_string(m) + ", fewer than the " +
                      std::to_string(processes) + " processes: every process needs at least one (give a smaller "
                      "--micro-batch, a larger --batch, or fewer processes)");
  return m;
}

TrainingStep::TrainingStep(Network& net, Optimizer& optimizer, GradientReducer& reducer, int64_t batch,
                           int64_t micro_batch, int64_t bucket_elements)
    : net_(net),
      optimizer_(optimizer),
      reducer_(reducer),
      micro_batch_(micro_batch <= 0 || micro_batch > batch ? batch : micro_batch),
      exact_(micro_batch_ < batch || reducer.processes() > 1),
      sum_(learnable_segments(net), net.learnable_count(), bucket_elements) {
  if (batch < 1) throw UsageError("--batch: expected a value >= 1, got " + std::to_string(batch));
  if (micro_batch < 0) throw UsageError("--micro-batch: expected a value >= 0, got " + std::to_string(micro_batch));
  row_width_ = kFixedColumns;
  for (size_t i = 0; i < net.layer_count(); ++i)
    if (auto* bn = dynamic_cast<BatchNorm*>(&net.layer(i))) {
      batch_norms_.push_back(bn);
      bn->defer_running_statistics(exact_);
      row_width_ += static_cast<int64_t>(bn->batch_statistics().size());
    }
}

TrainingStep::~TrainingStep() {
  for (BatchNorm* bn : batch_norms_) bn->defer_running_statistics(false);
}

// Written so that no sum or product can overflow, whatever --batch (up to 2^63 - 1) asks for.
int64_t TrainingStep::micro_batches(int64_t step_count) const {
  return step_count / micro_batch_ + (step_count % micro_batch_ != 0);
}

SampleRange TrainingStep::local_samples(int64_t step_count) const {
  const int64_t total = micro_batches(step_count);
  const MicroBatchRange share = reducer_.share(total);
  // Micro-batch k starts at sample k * micro_batch_ (< step_count for every k < total).
  auto start = [&](int64_t k) { return k < total ? k * micro_batch_ : step_count; };
  const int64_t first = start(share.first), end = start(share.first + share.count);
  return {first, end - first};
}

StepStats TrainingStep::run(const Tensor& x, std::span<const int32_t> labels, int64_t step_count,
                            const RunContext& ctx, double lr) {
  const SampleRange mine = local_samples(step_count);
  if (x.shape().n() != mine.count || static_cast<int64_t>(labels.size()) != mine.count)
    throw ShapeError("training step: expected this process's " + std::to_string(mine.count) + " samples, got " +
                     std::to_string(x.shape().n()) + " images and " + std::to_string(labels.size()) + " labels");
  return exact_ ? run_exact(x, labels, step_count, ctx, lr) : run_plain(x, labels, step_count, ctx, lr);
}

StepStats TrainingStep::run_plain(const Tensor& x, std::span<const int32_t> labels, int64_t step_count,
                                  const RunContext& ctx, double lr) {
  net_.zero_grad();
  const Tensor& logits = net_.forward(x, ctx);
  double loss = 0;
  int64_t correct = 0;
  {
    const trace::ScopeGuard scope("step", "loss");
    loss = softmax_cross_entropy(logits, labels, &dlogits_, step_count);
    correct = count_correct(logits, labels);
  }
  // Located now, while the outputs of this forward are still in the layers.
  const std::string where = std::isfinite(loss) ? std::string() : locate_non_finite(net_, /*outputs=*/true, false);
  net_.backward(dlogits_, ctx);
  return finish(StepStats{loss, correct, step_count, std::isfinite(loss), where}, lr);
}

StepStats TrainingStep::run_exact(const Tensor& x, std::span<const int32_t> labels, int64_t step_count,
                                  const RunContext& ctx, double lr) {
  const int64_t total = micro_batches(step_count);
  const MicroBatchRange share = reducer_.share(total);
  const SampleRange mine = local_samples(step_count);
  std::string where;
  const int64_t per_sample = x.shape().per_sample();
  rows_.assign(static_cast<size_t>(share.count * row_width_), 0.0);
  sum_.begin_step(total, share.count);
  reducer_.begin_sum(sum_, net_.grads());
  auto on_layer = [this](int64_t from) {
    reducer_.ready(from);
    reducer_.poll();
  };
  for (int64_t k = 0; k < share.count; ++k) {
    const int64_t first = k * micro_batch_;
    const int64_t count = std::min(micro_batch_, mine.count - first);
    trace::set_micro_batch(k);
    const Tensor* micro = &x;
    if (count != mine.count) {  // one micro-batch of several: its rows, copied
      const trace::ScopeGuard scope("step", "input");
      micro_x_.resize(x.shape().with_batch(count));
      std::memcpy(micro_x_.data(), x.data() + first * per_sample, static_cast<size_t>(count * per_sample) * sizeof(float));
      micro = &micro_x_;
    }
    RunContext micro_ctx = ctx;
    micro_ctx.first_sample = ctx.first_sample + mine.first + first;
    const auto micro_labels = labels.subspan(static_cast<size_t>(first), static_cast<size_t>(count));
    if (k == 0) net_.zero_grad();  // the later ones start from the zeros keep_and_clear() left
    const Tensor& logits = net_.forward(*micro, micro_ctx);
    double* row = rows_.data() + k * row_width_;
    {
      const trace::ScopeGuard scope("step", "loss");
      row[0] = softmax_cross_entropy(logits, micro_labels, &dlogits_, step_count);
      // Located now, while this micro-batch's outputs are still in the layers.
      if (!std::isfinite(row[0]) && where.empty()) where = locate_non_finite(net_, /*outputs=*/true, false);
      row[1] = static_cast<double>(count_correct(logits, micro_labels));
      row[2] = static_cast<double>(count);
      double* stats = row + kFixedColumns;
      for (BatchNorm* bn : batch_norms_)
        stats = std::copy(bn->batch_statistics().begin(), bn->batch_statistics().end(), stats);
    }
    if (k + 1 < share.count) {
      net_.backward(dlogits_, micro_ctx);
      const trace::ScopeGuard scope("step", "gradient_sum");
      sum_.keep_and_clear(net_.grads());
    } else {  // the last: its buckets can leave while backward goes on
      sum_.set_live(net_.grads());
      net_.backward(dlogits_, micro_ctx, on_layer);
    }
  }
  trace::set_micro_batch(-1);
  if (share.count == 0) net_.zero_grad();
  reducer_.ready(0);

  // Every micro-batch's values, added in micro-batch order: the same sums on every process.
  all_rows_.resize(static_cast<size_t>(total * row_width_));
  reducer_.gather(rows_, all_rows_, row_width_, total);
  double loss = 0, correct = 0, samples = 0;
  for (int64_t k = 0; k < total; ++k) {
    const double* row = all_rows_.data() + k * row_width_;
    loss += row[0];
    correct += row[1];
    samples += row[2];
  }
  // Running statistics: one update with the sample-weighted mean of the micro-batches' statistics (none for
  // a step whose loss is not finite: such a step changes nothing).
  if (std::isfinite(loss)) {
    const trace::ScopeGuard scope("step", "statistics");
    update_running_statistics(samples);
  }

  {
    const trace::ScopeGuard scope("step", "gradient_sum");
    reducer_.reduce();
  }
  StepStats stats{loss, static_cast<int64_t>(correct), step_count, std::isfinite(loss), where};
  if (!stats.finite && stats.non_finite.empty()) stats.non_finite = "another process's micro-batch";
  return finish(std::move(stats), lr);
}

void TrainingStep::update_running_statistics(double samples) {
  int64_t column = kFixedColumns;
  for (BatchNorm* bn : batch_norms_) {
    const auto width = static_cast<int64_t>(bn->batch_statistics().size());
    bn_values_.assign(static_cast<size_t>(width), 0.0);
    for (const double* row = all_rows_.data(); row < all_rows_.data() + all_rows_.size(); row += row_width_)
      for (int64_t i = 0; i < width; ++i) bn_values_[static_cast<size_t>(i)] += row[2] * row[column + i];
    for (double& v : bn_values_) v /= samples;
    bn->update_running_statistics(bn_values_);
    column += width;
  }
}

StepStats TrainingStep::finish(StepStats stats, double lr) {
  if (!stats.finite) return stats;
  // A finite loss can still come with an infinite gradient (an overflow in backward): no update either way.
  bool finite = true;
  {
    const trace::ScopeGuard scope("step", "finite_check");
    finite = all_finite(net_.grads());
  }
  if (!finite) {
    stats.finite = false;
    stats.non_finite = locate_non_finite(net_, false, /*grads=*/true);
    return stats;
  }
  const trace::ScopeGuard scope("step", "optimizer");
  optimizer_.step(net_.params(), net_.grads(), lr);
  return stats;
}

}  // namespace stride
