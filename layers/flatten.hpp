#pragma once
// (N, ...) -> (N, F) with F = per-sample size; the data is copied unchanged (NCHW order).
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

class Flatten final : public Layer {
 public:
  explicit Flatten(std::string name) : Layer(std::move(name)) {}
  // No keys.
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "flatten"; }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;
};

}  // namespace stride
