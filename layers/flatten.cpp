#include "layers/flatten.hpp"

#include <cstring>

#include "framework/core/errors.hpp"

namespace stride {

std::unique_ptr<Layer> Flatten::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Flatten>(c.name());
}

Shape Flatten::output_shape(const Shape& in) const {
  if (in.rank < 2) throw ShapeError(name() + ": expected input of rank >= 2 (N, ...), got " + in.str());
  return Shape{in[0], in.per_sample()};
}

// x: (N, C, H, W) -> y: (N, C*H*W)
void Flatten::forward(const Tensor& x, Tensor& y, const RunContext&) {
  y.resize(output_shape(x.shape()));
  if (x.numel() > 0) std::memcpy(y.data(), x.data(), static_cast<size_t>(x.numel()) * sizeof(float));
}

// dy: (N, C*H*W) -> dx: (N, C, H, W)
void Flatten::backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, const RunContext&) {
  check_shape(name(), "output gradient", output_shape(x.shape()), dy.shape());
  if (!dx) return;
  dx->resize(x.shape());
  if (dy.numel() > 0) std::memcpy(dx->data(), dy.data(), static_cast<size_t>(dy.numel()) * sizeof(float));
}

}  // namespace stride
