#pragma once
// Average pooling as torch.nn.AvgPool2d (and Caffe's AVE pooling). With count_include_pad the divisor is the
// window clipped to the padded extent, so a ceil-mode window hanging past the padding divides by fewer
// elements; without it, only the real input elements in the window count.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "layers/pool2d_geometry.hpp"

namespace stride {

class LayerConfig;

class AvgPool2d final : public Layer {
 public:
  // Throws ConfigError naming the layer for bad options (see resolve_pool2d_options).
  AvgPool2d(std::string name, const Pool2dOptions& options);
  // Keys: kernel (required), stride (default: kernel), pad, ceil_mode, count_include_pad (default true).
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "avg_pool2d"; }
  Shape output_shape(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const Pool2dOptions& options() const { return options_; }

 private:
  Pool2dOptions options_;
  PoolTables tables_;
};

}  // namespace stride
