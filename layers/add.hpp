#pragma once
// Residual add: y = a + b for two inputs of the same shape.
#include <memory>
#include <string>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

class Add final : public BinaryLayer {
 public:
  explicit Add(std::string name) : BinaryLayer(std::move(name)) {}
  // No keys (the network reads "inputs").
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "add"; }
  Shape output_shape(const Shape& in) const override { return in; }
  double forward_flops(const Shape& in) const override { return static_cast<double>(in.numel()); }
  // Throws ShapeError naming this layer and both shapes unless they are equal.
  void check_inputs(const Shape& a, const Shape& b) const override;
  void forward2(const Tensor& a, const Tensor& b, Tensor& y, const RunContext& ctx) override;
  // da = db = dy.
  void backward2(const Tensor& dy, Tensor* da, Tensor* db, const RunContext& ctx) override;
};

}  // namespace stride
