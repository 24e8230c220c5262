#include "layers/relu.hpp"

#include <algorithm>

#include "framework/core/kernels/kernels.hpp"
#include "layers/elementwise.hpp"

namespace stride {

std::unique_ptr<Layer> Relu::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Relu>(c.name());
}

// x: any shape -> y: same shape
void Relu::forward(const Tensor& x, Tensor& y, const RunContext&) {
  // x < 0 ? 0 : x keeps NaN: NaN propagates, as in PyTorch. The vector kernel runs the loop.
  y.resize(x.shape());
  const float* xp = x.data();
  float* yp = y.data();
  const kernels::KernelTable& k = kernels::kernels();
  parallel_for(x.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) { k.relu_forward(xp + b, yp + b, e - b); });
}

// y, dy: any shape -> dx: same shape
void Relu::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext&) {
  // The gradient at exactly 0 is 0, as in PyTorch.
  check_shape(name(), "output gradient", y.shape(), dy.shape());
  check_shape(name(), "output", x.shape(), y.shape());
  if (!dx) return;
  dx->resize(x.shape());
  const float* yp = y.data();
  const float* dyp = dy.data();
  float* dxp = dx->data();
  const kernels::KernelTable& k = kernels::kernels();
  parallel_for(y.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) { k.relu_backward(yp + b, dyp + b, dxp + b, e - b); });
}

}  // namespace stride
