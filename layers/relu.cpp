#include "layers/relu.hpp"

#include <algorithm>

#include "layers/elementwise.hpp"

namespace stride {

std::unique_ptr<Layer> Relu::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Relu>(c.name());
}

// x: any shape -> y: same shape
void Relu::forward(const Tensor& x, Tensor& y, const RunContext&) {
  // std::max(v, 0) returns v when v is NaN: NaN propagates, as in PyTorch.
  elementwise_forward(x, y, [](float v) { return std::max(v, 0.0f); });
}

// y, dy: any shape -> dx: same shape
void Relu::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext&) {
  // The gradient at exactly 0 is 0, as in PyTorch.
  elementwise_backward(name(), x, y, dy, dx, [](float out, float d) { return out > 0.0f ? d : 0.0f; });
}

}  // namespace stride
