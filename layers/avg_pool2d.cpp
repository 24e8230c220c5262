#include "layers/avg_pool2d.hpp"

#include <algorithm>
#include <cassert>

#include "framework/layer_config.hpp"
#include "framework/parallel.hpp"

namespace stride {

namespace {

int64_t divisor(const PoolSpan& hs, const PoolSpan& ws, bool count_include_pad) {
  return count_include_pad ? hs.padded * ws.padded : (hs.end - hs.begin) * (ws.end - ws.begin);
}

// x: (N, C, H, W) -> y: (N, C, P, Q). Sums in float in row-major window order, then divides, as ATen does.
void avg_pool2d_forward(const float* x, float* y, const Pool2dGeometry& g, bool count_include_pad) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float* xp = x + nc * plane_in;
      float* yp = y + nc * plane_out;
      for (int64_t p = 0; p < g.P; ++p) {
        const PoolSpan hs = pool_span(p, g.R, g.stride_h, g.pad_h, g.H);
        for (int64_t q = 0; q < g.Q; ++q) {
          const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
          assert(hs.begin < hs.end && ws.begin < ws.end);
          float sum = 0.0f;
          for (int64_t h = hs.begin; h < hs.end; ++h)
            for (int64_t w = ws.begin; w < ws.end; ++w) sum += xp[h * g.W + w];
          yp[p * g.Q + q] = sum / static_cast<float>(divisor(hs, ws, count_include_pad));
        }
      }
    }
  });
}

// dy: (N, C, P, Q) -> dx: (N, C, H, W), overwritten; overlapping windows add in output order within a task.
void avg_pool2d_backward(const float* dy, float* dx, const Pool2dGeometry& g, bool count_include_pad) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      float* dxp = dx + nc * plane_in;
      const float* dyp = dy + nc * plane_out;
      std::fill(dxp, dxp + plane_in, 0.0f);
      for (int64_t p = 0; p < g.P; ++p) {
        const PoolSpan hs = pool_span(p, g.R, g.stride_h, g.pad_h, g.H);
        for (int64_t q = 0; q < g.Q; ++q) {
          const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
          const float share = dyp[p * g.Q + q] / static_cast<float>(divisor(hs, ws, count_include_pad));
          for (int64_t h = hs.begin; h < hs.end; ++h)
            for (int64_t w = ws.begin; w < ws.end; ++w) dxp[h * g.W + w] += share;
        }
      }
    }
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
  avg_pool2d_forward(x.data(), y.data(), g, options_.count_include_pad);
}

void AvgPool2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx,
                         const RunContext& /*ctx*/) {
  if (dx == nullptr) return;
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.C, g.P, g.Q}, dy.shape());
  dx->resize(x.shape());
  avg_pool2d_backward(dy.data(), dx->data(), g, options_.count_include_pad);
}

}  // namespace stride
