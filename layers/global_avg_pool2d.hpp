#pragma once
// Global average pooling, (N, C, H, W) -> (N, C, 1, 1), as torch.nn.AdaptiveAvgPool2d(1): the ResNets' head.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"

namespace stride {

class LayerConfig;

class GlobalAvgPool2d final : public Layer {
 public:
  explicit GlobalAvgPool2d(std::string name) : Layer(std::move(name)) {}
  // No keys besides name and type.
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "global_avg_pool2d"; }
  Shape output_shape(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;
};

}  // namespace stride
