#pragma once
// Elementwise logistic sigmoid, 1 / (1 + exp(-x)); the gradient y (1 - y) comes from y. Any rank.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

class Sigmoid final : public Layer {
 public:
  explicit Sigmoid(std::string name) : Layer(std::move(name)) {}
  // No keys.
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "sigmoid"; }
  Shape output_shape(const Shape& in) const override { return in; }
  double forward_flops(const Shape& in) const override { return static_cast<double>(in.numel()); }
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // Reads y and dy only (not x).
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;
};

}  // namespace stride
