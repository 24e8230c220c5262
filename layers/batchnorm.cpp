#include "layers/batchnorm.hpp"

#include <cmath>
#include <string>

#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

BatchNorm::BatchNorm(std::string name, BatchNormKind kind, BatchNormOptions options)
    : Layer(std::move(name)), kind_(kind), options_(options) {
  if (!(options_.eps > 0.0))
    throw ConfigError(this->name() + ": eps must be positive, got " + std::to_string(options_.eps));
  if (!(options_.momentum >= 0.0 && options_.momentum <= 1.0))
    throw ConfigError(this->name() + ": momentum must be in [0, 1], got " + std::to_string(options_.momentum));
}

std::unique_ptr<Layer> BatchNorm::from_config(const LayerConfig& c) {
  BatchNormKind kind;
  if (c.type() == "batchnorm2d") {
    kind = BatchNormKind::d2;
  } else if (c.type() == "batchnorm1d") {
    kind = BatchNormKind::d1;
  } else {
    throw ConfigError(c.context() + "expected type batchnorm2d or batchnorm1d, got \"" + c.type() + "\"");
  }
  BatchNormOptions o;
  o.eps = c.get_float("eps", 1e-5);
  o.momentum = c.get_float("momentum", 0.1);
  o.affine = c.get_bool("affine", true);
  c.finish();
  if (!(o.eps > 0.0)) throw ConfigError(c.context() + "field 'eps': expected a positive number, got " + std::to_string(o.eps));
  if (!(o.momentum >= 0.0 && o.momentum <= 1.0))
    throw ConfigError(c.context() + "field 'momentum': expected a number in [0, 1], got " + std::to_string(o.momentum));
  return std::make_unique<BatchNorm>(c.name(), kind, o);
}

Shape BatchNorm::output_shape(const Shape& in) const {
  const int rank = kind_ == BatchNormKind::d2 ? 4 : 2;
  if (in.rank != rank)
    throw ShapeError(name() + ": expected input of rank " + std::to_string(rank) +
                     (rank == 4 ? " (N, C, H, W)" : " (N, C)") + ", got " + in.str());
  return in;
}

std::vector<ParamSpec> BatchNorm::param_specs(const Shape& in) const {
  output_shape(in);
  const int64_t C = in[1];
  std::vector<ParamSpec> specs;
  if (options_.affine) {
    specs.push_back({"weight", Shape{C}, ParamRole::learnable, Init::ones, 0, 0, false});
    specs.push_back({"bias", Shape{C}, ParamRole::learnable, Init::zeros, 0, 0, false});
  }
  specs.push_back({"running_mean", Shape{C}, ParamRole::state, Init::zeros, 0, 0, false});
  specs.push_back({"running_var", Shape{C}, ParamRole::state, Init::ones, 0, 0, false});
  return specs;
}

void BatchNorm::bind(std::span<const ParamView> params) {
  const size_t expected = options_.affine ? 4 : 2;
  if (params.size() != expected)
    throw ShapeError(name() + ": expected " + std::to_string(expected) + " parameter views, got " +
                     std::to_string(params.size()));
  size_t i = 0;
  if (options_.affine) {
    weight_ = params[i++];
    bias_ = params[i++];
  }
  running_mean_ = params[i++];
  running_var_ = params[i++];
  const size_t C = running_mean_.value.size();
  if (C == 0 || running_var_.value.size() != C || (options_.affine && (weight_.value.size() != C || bias_.value.size() != C)))
    throw ShapeError(name() + ": bound parameters do not all have the same channel count " + std::to_string(C));
  channels_ = static_cast<int64_t>(C);
  mean_.assign(C, 0.0);
  invstd_.assign(C, 0.0);
  batch_stats_.assign(2 * C, 0.0);
}

void BatchNorm::update_running_statistics(std::span<const double> mean_then_var) {
  const auto C = static_cast<size_t>(channels_);
  if (mean_then_var.size() != 2 * C)
    throw ShapeError(name() + ": expected " + std::to_string(2 * C) + " running-statistics values, got " +
                     std::to_string(mean_then_var.size()));
  for (size_t c = 0; c < C; ++c) update_running_stats(static_cast<int64_t>(c), mean_then_var[c], mean_then_var[C + c]);
}

BatchNorm::Geom BatchNorm::geometry(const Shape& in) const {
  output_shape(in);
  if (channels_ == 0) throw Error(name() + ": forward called before bind");
  if (in[1] != channels_)
    throw ShapeError(name() + ": expected input with " + std::to_string(channels_) + " channels, got " + in.str());
  return Geom{in[0], in[1], kind_ == BatchNormKind::d2 ? in[2] * in[3] : 1};
}

// The running statistics, kept apart from the pass so that how often and from what they are updated stays one
// decision: running = (1 - momentum) * running + momentum * batch statistic (the unbiased variance).
void BatchNorm::update_running_stats(int64_t c, double mean, double unbiased_var) {
  const double momentum = options_.momentum;
  float& rm = running_mean_.value[static_cast<size_t>(c)];
  float& rv = running_var_.value[static_cast<size_t>(c)];
  rm = static_cast<float>((1.0 - momentum) * rm + momentum * mean);
  rv = static_cast<float>((1.0 - momentum) * rv + momentum * unbiased_var);
}

// A training forward's statistics of channel c: kept for update_running_statistics() when deferred (a step of
// several micro-batches updates once, from all of them), applied at once otherwise.
void BatchNorm::record_batch_stats(int64_t c, double mean, double unbiased_var) {
  if (!deferred_) return update_running_stats(c, mean, unbiased_var);
  batch_stats_[static_cast<size_t>(c)] = mean;
  batch_stats_[static_cast<size_t>(channels_ + c)] = unbiased_var;
}

// x: (N, C, H, W) or (N, C) -> y: same shape. One task per channel: each channel's sums are formed by one
// task in a fixed order (16 double partials per channel, kernels::sum16), so the result does not depend on
// the thread count or the instruction set.
void BatchNorm::forward(const Tensor& x, Tensor& y, const RunContext& ctx) {
  const Geom g = geometry(x.shape());
  const int64_t M = g.N * g.HW;  // values per channel
  trained_ = ctx.mode == Mode::train;
  if (trained_ && M < 2)
    throw ShapeError(name() + ": training needs more than 1 value per channel, got input " + x.shape().str());
  y.resize(x.shape());
  const float* xp = x.data();
  float* yp = y.data();
  const kernels::KernelTable& k = kernels::kernels();
  const double eps = options_.eps;
  parallel_for(g.C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double mean, invstd;
      if (trained_) {
        double acc[16] = {};
        for (int64_t n = 0; n < g.N; ++n) k.sum16(xp + (n * g.C + c) * g.HW, g.HW, acc);
        mean = kernels::reduce16(acc) / static_cast<double>(M);
        double sq[16] = {};  // two-pass variance: no cancellation for large means
        for (int64_t n = 0; n < g.N; ++n) k.sum16_sq(xp + (n * g.C + c) * g.HW, g.HW, mean, sq);
        const double ss = kernels::reduce16(sq);
        invstd = 1.0 / std::sqrt(ss / static_cast<double>(M) + eps);
        record_batch_stats(c, mean, ss / static_cast<double>(M - 1));
      } else {
        mean = running_mean_.value[static_cast<size_t>(c)];
        invstd = 1.0 / std::sqrt(static_cast<double>(running_var_.value[static_cast<size_t>(c)]) + eps);
      }
      mean_[static_cast<size_t>(c)] = mean;
      invstd_[static_cast<size_t>(c)] = invstd;
      // y = (x - mean) * scale + beta with scale = gamma * invstd; subtracting first keeps precision when
      // the mean is large against the spread.
      const double gamma = options_.affine ? weight_.value[static_cast<size_t>(c)] : 1.0;
      const auto beta = options_.affine ? bias_.value[static_cast<size_t>(c)] : 0.0f;
      const auto scale = static_cast<float>(gamma * invstd);
      const auto mean_f = static_cast<float>(mean);
      for (int64_t n = 0; n < g.N; ++n)
        k.affine(xp + (n * g.C + c) * g.HW, yp + (n * g.C + c) * g.HW, g.HW, mean_f, scale, beta);
    }
  });
}

// x, dy: (N, C, H, W) or (N, C) -> dx: same shape (overwritten); dweight, dbias: (C) accumulated.
// Train: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); eval: dx = gamma * invstd * dy.
void BatchNorm::backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, const RunContext&) {
  const Geom g = geometry(x.shape());
  check_shape(name(), "output gradient", x.shape(), dy.shape());
  const int64_t M = g.N * g.HW;
  if (dx) dx->resize(x.shape());
  const float* xp = x.data();
  const float* dyp = dy.data();
  float* dxp = dx ? dx->data() : nullptr;
  const kernels::KernelTable& k = kernels::kernels();
  parallel_for(g.C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const double mean = mean_[static_cast<size_t>(c)], invstd = invstd_[static_cast<size_t>(c)];
      double acc_dy[16] = {}, acc_dyx[16] = {};
      for (int64_t n = 0; n < g.N; ++n)
        k.sum16_dy(dyp + (n * g.C + c) * g.HW, xp + (n * g.C + c) * g.HW, g.HW, mean, invstd, acc_dy, acc_dyx);
      const double sum_dy = kernels::reduce16(acc_dy), sum_dy_xhat = kernels::reduce16(acc_dyx);
      if (options_.affine && !weight_.grad.empty()) {
        weight_.grad[static_cast<size_t>(c)] += static_cast<float>(sum_dy_xhat);
        bias_.grad[static_cast<size_t>(c)] += static_cast<float>(sum_dy);
      }
      if (!dxp) continue;
      const double gamma = options_.affine ? weight_.value[static_cast<size_t>(c)] : 1.0;
      const auto kk = static_cast<float>(gamma * invstd);
      if (trained_) {
        const auto a = static_cast<float>(sum_dy / static_cast<double>(M));
        const auto b = static_cast<float>(sum_dy_xhat / static_cast<double>(M));
        const auto mean_f = static_cast<float>(mean), invstd_f = static_cast<float>(invstd);
        for (int64_t n = 0; n < g.N; ++n) {
          const int64_t off = (n * g.C + c) * g.HW;
          k.bn_dx(dyp + off, xp + off, dxp + off, g.HW, kk, a, b, mean_f, invstd_f);
        }
      } else {
        for (int64_t n = 0; n < g.N; ++n) {
          const int64_t off = (n * g.C + c) * g.HW;
          k.affine(dyp + off, dxp + off, g.HW, 0.0f, kk, 0.0f);
        }
      }
    }
  });
}

}  // namespace stride
