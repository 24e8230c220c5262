#pragma once
// The shared loops of the elementwise activations (relu, sigmoid, tanh): each layer supplies only its
// function of x and its gradient as a function of (y, dy).
#include <string_view>

#include "framework/core/parallel.hpp"
#include "framework/core/tensor.hpp"

namespace stride {

inline constexpr int64_t kElementwiseGrain = 16384;  // elements per task: large enough to amortize scheduling

// x: any shape -> y: same shape, y[i] = f(x[i]).
template <typename F>
void elementwise_forward(const Tensor& x, Tensor& y, F f) {
  y.resize(x.shape());
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(x.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) yp[i] = f(xp[i]);
  });
}

// y, dy: any shape -> dx (overwritten, skipped when null): dx[i] = g(y[i], dy[i]).
template <typename G>
void elementwise_backward(std::string_view layer, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, G g) {
  check_shape(layer, "output gradient", y.shape(), dy.shape());
  check_shape(layer, "output", x.shape(), y.shape());
  if (!dx) return;
  dx->resize(x.shape());
  const float* yp = y.data();
  const float* dyp = dy.data();
  float* dxp = dx->data();
  parallel_for(y.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dxp[i] = g(yp[i], dyp[i]);
  });
}

}  // namespace stride
