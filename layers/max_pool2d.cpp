#include "layers/max_pool2d.hpp"

#include <algorithm>
#include <cassert>
#include <limits>

#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

// x: (N, C, H, W) -> y: (N, C, P, Q), argmax: (N, C, P, Q) index into the input plane.
// The comparison is PyTorch's (val > max || isnan(val)), starting from -inf at the first in-window element,
// so ties keep the first maximum in row-major window order and an all -inf window still records a valid
// index. The kernel runs a vector of output columns at once, each lane seeing its window in that order.
void max_pool2d_forward(const float* x, float* y, int32_t* argmax, const Pool2dGeometry& g, kernels::Pool k) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const kernels::KernelTable& t = kernels::kernels();
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    kernels::Pool part = k;
    part.planes = end - begin;
    t.max_pool_forward(part, x + begin * plane_in, y + begin * plane_out, argmax + begin * plane_out);
  });
}

// dy: (N, C, P, Q), argmax -> dx: (N, C, H, W), overwritten. Overlapping windows may pick the same input,
// so the plane is zeroed and added to in output order, all inside one task.
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, const Pool2dGeometry& g) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      float* dxp = dx + nc * plane_in;
      const float* dyp = dy + nc * plane_out;
      const int32_t* ap = argmax + nc * plane_out;
      std::fill(dxp, dxp + plane_in, 0.0f);
      for (int64_t i = 0; i < plane_out; ++i) dxp[ap[i]] += dyp[i];
    }
  });
}

}  // namespace

MaxPool2d::MaxPool2d(std::string name, const Pool2dOptions& options)
    : Layer(std::move(name)), options_(resolve_pool2d_options(this->name(), options)) {}

std::unique_ptr<Layer> MaxPool2d::from_config(const LayerConfig& c) {
  Pool2dOptions opt = pool2d_options_from_config(c);
  c.finish();
  return std::make_unique<MaxPool2d>(c.name(), opt);
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return Shape{g.N, g.C, g.P, g.Q};
}

double MaxPool2d::forward_flops(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return static_cast<double>(g.N * g.C * g.P * g.Q) * static_cast<double>(g.R * g.S);
}

void MaxPool2d::forward(const Tensor& x, Tensor& y, const RunContext& /*ctx*/) {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  y.resize(Shape{g.N, g.C, g.P, g.Q});
  argmax_.resize(static_cast<size_t>(y.numel()));  // keeps capacity once the largest batch has been seen
  argmax_input_ = x.shape();
  max_pool2d_forward(x.data(), y.data(), argmax_.data(), g, tables_.build(g, true));
}

void MaxPool2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx,
                         const RunContext& /*ctx*/) {
  if (dx == nullptr) return;
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.C, g.P, g.Q}, dy.shape());
  if (argmax_input_ != x.shape())
    throw ShapeError(name() + ": backward for input " + x.shape().str() + " but the last forward saw " +
                     (argmax_input_.rank == 0 ? std::string("no input") : argmax_input_.str()));
  dx->resize(x.shape());
  max_pool2d_backward(dy.data(), argmax_.data(), dx->data(), g);
}

}  // namespace stride
