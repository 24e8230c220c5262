#pragma once
// Power-average pooling as torch.nn.LPPool2d / F.lp_pool2d: y = (avg_pool2d(x^p) * R*S)^(1/p), i.e.
// (sum over the window of x^p)^(1/p), with avg_pool2d's count_include_pad divisor. Two consequences kept on
// purpose to match torch: a ceil-mode window clipped by the input edge is scaled up by R*S / (its size), and
// a negative power sum (odd p, negative inputs) gives NaN. Padding, which torch's lp_pool2d lacks, adds
// zeros: avg_pool2d(x^p, pad) * R*S. Where y == 0 the gradient is 0, as torch defines it.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "layers/pool2d_geometry.hpp"

namespace stride {

class LayerConfig;

class LpPool2d final : public Layer {
 public:
  // Throws ConfigError naming the layer for bad options, including p <= 0 (see resolve_pool2d_options).
  LpPool2d(std::string name, const Pool2dOptions& options);
  // Keys: kernel (required), stride (default: kernel), pad, ceil_mode, p (default 2, > 0).
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "lp_pool2d"; }
  Shape output_shape(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // Needs y from the forward of x: dL/dx_i = dy * (R*S / divisor) * x_i^(p-1) * y^(1-p).
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const Pool2dOptions& options() const { return options_; }

 private:
  Pool2dOptions options_;
};

}  // namespace stride
