#pragma once
// Batch normalization (Ioffe & Szegedy), as PyTorch's BatchNorm2d ("batchnorm2d": (N, C, H, W), statistics per
// channel over N, H, W) and BatchNorm1d ("batchnorm1d": (N, C), per feature over N). Training normalizes with
// the batch mean and biased variance and updates the running statistics with the unbiased variance; evaluation
// normalizes with the running statistics.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

enum class BatchNormKind { d1, d2 };

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch statistic
  bool affine = true;     // learnable per-channel scale (weight) and shift (bias)
};

class BatchNorm final : public Layer {
 public:
  BatchNorm(std::string name, BatchNormKind kind, BatchNormOptions options);
  // Type "batchnorm2d" or "batchnorm1d" (from c.type()); keys: eps (1e-5), momentum (0.1), affine (true).
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return kind_ == BatchNormKind::d2 ? "batchnorm2d" : "batchnorm1d"; }
  Shape output_shape(const Shape& in) const override;
  // weight (C), bias (C) when affine; then running_mean (C), running_var (C) as state.
  std::vector<ParamSpec> param_specs(const Shape& in) const override;
  double forward_flops(const Shape& in) const override { return 4.0 * static_cast<double>(in.numel()); }
  void bind(std::span<const ParamView> params) override;

  // Training mode also updates running_mean and running_var.
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // The full batch-norm gradient after a training forward; the affine map's gradient after an eval forward.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const BatchNormOptions& options() const { return options_; }

  // Running statistics per training step instead of per forward, for steps of several micro-batches ("ghost
  // batch norm": each micro-batch is normalized with its own statistics). While deferred, a training forward
  // leaves running_mean and running_var alone and keeps its batch's per-channel mean and unbiased variance,
  // which batch_statistics() returns (C means, then C variances); the step then applies one update with
  // update_running_statistics (the same layout): running = (1 - momentum) * running + momentum * value.
  void defer_running_statistics(bool deferred) { deferred_ = deferred; }
  std::span<const double> batch_statistics() const { return batch_stats_; }
  void update_running_statistics(std::span<const double> mean_then_var);

 private:
  struct Geom {
    int64_t N, C, HW;
  };
  Geom geometry(const Shape& in) const;  // validates against the bound channel count
  // Moves channel c's running mean and variance towards one batch's statistics (training forward only).
  void update_running_stats(int64_t c, double mean, double unbiased_var);
  void record_batch_stats(int64_t c, double mean, double unbiased_var);

  BatchNormKind kind_;
  BatchNormOptions options_;
  int64_t channels_ = 0;  // known after bind
  ParamView weight_, bias_, running_mean_, running_var_;
  bool trained_ = false;        // mode of the last forward
  std::vector<double> mean_;    // per channel: the mean used by the last forward
  std::vector<double> invstd_;  // per channel: 1 / sqrt(var + eps) used by the last forward
  bool deferred_ = false;
  std::vector<double> batch_stats_;  // deferred: the last training forward's means, then unbiased variances
};

}  // namespace stride
