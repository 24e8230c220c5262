#include "layers/relu.hpp"

#include <algorithm>

#include "framework/parallel.hpp"

namespace stride {
namespace {
constexpr int64_t kGrain = 16384;  // elements per task: large enough to amortize scheduling
}  // namespace

std::unique_ptr<Layer> Relu::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Relu>(c.name());
}

// x: any shape -> y: same shape
void Relu::forward(const Tensor& x, Tensor& y, const RunContext&) {
  y.resize(x.shape());
  const float* xp = x.data();
  float* yp = y.data();
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) yp[i] = std::max(xp[i], 0.0f);  // NaN propagates, as in PyTorch
  });
}

// y, dy: any shape -> dx: same shape
void Relu::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext&) {
  check_shape(name(), "output gradient", y.shape(), dy.shape());
  check_shape(name(), "output", x.shape(), y.shape());
  if (!dx) return;
  dx->resize(x.shape());
  const float* yp = y.data();
  const float* dyp = dy.data();
  float* dxp = dx->data();
  parallel_for(y.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dxp[i] = yp[i] > 0.0f ? dyp[i] : 0.0f;
  });
}

}  // namespace stride
