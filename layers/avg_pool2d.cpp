#include "layers/avg_pool2d.hpp"

#include <algorithm>
#include <cassert>

#include "framework/core/kernels/kernels.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

// x: (N, C, H, W) -> y: (N, C, P, Q). Sums in float in row-major window order from 0, then divides, as ATen
// does; the kernel runs a vector of output columns at once, each lane in that order.
void avg_pool2d_forward(const float* x, float* y, const Pool2dGeometry& g, kernels::Pool k) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const kernels::KernelTable& t = kernels::kernels();
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    kernels::Pool part = k;
    part.planes = end - begin;
    t.avg_pool_forward(part, x + begin * plane_in, y + begin * plane_out);
  });
}

// dy: (N, C, P, Q) -> dx: (N, C, H, W), overwritten. Each dx element adds its windows' shares in a fixed
// order (output rows, window rows, window columns, output columns), all inside one task.
void avg_pool2d_backward(const float* dy, float* dx, const Pool2dGeometry& g, kernels::Pool k) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const kernels::KernelTable& t = kernels::kernels();
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    kernels::Pool part = k;
    part.planes = end - begin;
    t.avg_pool_backward(part, dy + begin * plane_out, dx + begin * plane_in);
  });
}

}  // namespace

AvgPool2d::AvgPool2d(std::string name, const Pool2dOptions& options)
    : Layer(std::move(name)), options_(resolve_pool2d_options(this->name(), options)) {}

std::unique_ptr<Layer> AvgPool2d::from_config(const LayerConfig& c) {
  Pool2dOptions opt = pool2d_options_from_config(c);
  opt.count_include_pad = c.get_bool("count_include_pad", true);
  c.finish();
  return std::make_unique<AvgPool2d>(c.name(), opt);
}

Shape AvgPool2d::output_shape(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return Shape{g.N, g.C, g.P, g.Q};
}

double AvgPool2d::forward_flops(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return static_cast<double>(g.N * g.C * g.P * g.Q) * static_cast<double>(g.R * g.S);
}

void AvgPool2d::forward(const Tensor& x, Tensor& y, const RunContext& /*ctx*/) {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  y.resize(Shape{g.N, g.C, g.P, g.Q});
  avg_pool2d_forward(x.data(), y.data(), g, tables_.build(g, options_.count_include_pad));
}

void AvgPool2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx,
                         const RunContext& /*ctx*/) {
  if (dx == nullptr) return;
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.C, g.P, g.Q}, dy.shape());
  dx->resize(x.shape());
  avg_pool2d_backward(dy.data(), dx->data(), g, tables_.build(g, options_.count_include_pad));
}

}  // namespace stride
