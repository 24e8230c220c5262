#include "layers/sigmoid.hpp"

#include <cmath>

#include "layers/elementwise.hpp"

namespace stride {

std::unique_ptr<Layer> Sigmoid::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Sigmoid>(c.name());
}

// x: any shape -> y: same shape
void Sigmoid::forward(const Tensor& x, Tensor& y, const RunContext&) {
  elementwise_forward(x, y, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
}

// y, dy: any shape -> dx: same shape
void Sigmoid::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext&) {
  elementwise_backward(name(), x, y, dy, dx, [](float out, float d) { return d * out * (1.0f - out); });
}

}  // namespace stride
