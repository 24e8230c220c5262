#pragma once
// Elementwise ReLU, max(x, 0); the gradient at exactly 0 is 0, as in PyTorch. Any rank.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

class Relu final : public Layer {
 public:
  explicit Relu(std::string name) : Layer(std::move(name)) {}
  // No keys.
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "relu"; }
  Shape output_shape(const Shape& in) const override { return in; }
  double forward_flops(const Shape& in) const override { return static_cast<double>(in.numel()); }
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // Reads y and dy only (not x).
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;
};

}  // namespace stride
