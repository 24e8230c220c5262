#include "layers/tanh.hpp"

#include <cmath>

#include "layers/elementwise.hpp"

namespace stride {

std::unique_ptr<Layer> Tanh::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Tanh>(c.name());
}

// x: any shape -> y: same shape
void Tanh::forward(const Tensor& x, Tensor& y, const RunContext&) {
  elementwise_forward(x, y, [](float v) { return std::tanh(v); });
}

// y, dy: any shape -> dx: same shape
void Tanh::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext&) {
  elementwise_backward(name(), x, y, dy, dx, [](float out, float d) { return d * (1.0f - out * out); });
}

}  // namespace stride
