#pragma once
// Max pooling as torch.nn.MaxPool2d: padded positions are never chosen, ties go to the first maximum in
// row-major window order, NaN propagates. Backward sends each output's gradient to that one input element.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "layers/pool2d_geometry.hpp"

namespace stride {

class LayerConfig;

class MaxPool2d final : public Layer {
 public:
  // Throws ConfigError naming the layer for bad options (see resolve_pool2d_options).
  MaxPool2d(std::string name, const Pool2dOptions& options);
  // Keys: kernel (required), stride (default: kernel), pad, ceil_mode.
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "max_pool2d"; }
  Shape output_shape(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // Uses the argmax recorded by the last forward, which must have seen an input of x's shape.
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const Pool2dOptions& options() const { return options_; }

 private:
  Pool2dOptions options_;
  // Per output element, the index h * W + w within its (n, c) plane of the input that won.
  std::vector<int32_t> argmax_;
  Shape argmax_input_;  // input shape of the forward that filled argmax_
  PoolTables tables_;
};

}  // namespace stride
