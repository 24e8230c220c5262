#include "layers/lp_pool2d.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

// v^e with ATen's fast paths for a scalar exponent (x*x for 2, x*x*x for 3, sqrt for 0.5), so the common
// p = 2 costs no pow() call and rounds as torch does.
inline float power(float v, float e) {
  if (e == 2.0f) return v * v;
  if (e == 3.0f) return v * v * v;
  if (e == 1.0f) return v;
  if (e == 0.5f) return std::sqrt(v);
  if (e == -1.0f) return 1.0f / v;
  if (e == 0.0f) return 1.0f;
  return std::pow(v, e);
}

// x: (N, C, H, W) -> y: (N, C, P, Q), p-norm over each window (see lp_pool2d.hpp for the scaling).
void lp_pool2d_forward(const float* x, float* y, const Pool2dGeometry& g, float p) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const float area = static_cast<float>(g.R * g.S);
  const float root = static_cast<float>(1.0 / static_cast<double>(p));
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float* xp = x + nc * plane_in;
      float* yp = y + nc * plane_out;
      for (int64_t p_out = 0; p_out < g.P; ++p_out) {
        const PoolSpan hs = pool_span(p_out, g.R, g.stride_h, g.pad_h, g.H);
        for (int64_t q = 0; q < g.Q; ++q) {
          const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
          assert(hs.begin < hs.end && ws.begin < ws.end);
          float sum = 0.0f;
          for (int64_t h = hs.begin; h < hs.end; ++h)
            for (int64_t w = ws.begin; w < ws.end; ++w) sum += power(xp[h * g.W + w], p);
          const float mean = sum / static_cast<float>(hs.padded * ws.padded);
          yp[p_out * g.Q + q] = power(mean * area, root);
        }
      }
    }
  });
}

// x, y, dy -> dx: (N, C, H, W), overwritten; overlapping windows add in output order within a task.
void lp_pool2d_backward(const float* x, const float* y, const float* dy, float* dx, const Pool2dGeometry& g,
                        float p) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const float area = static_cast<float>(g.R * g.S);
  parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float* xp = x + nc * plane_in;
      const float* yp = y + nc * plane_out;
      const float* dyp = dy + nc * plane_out;
      float* dxp = dx + nc * plane_in;
      std::fill(dxp, dxp + plane_in, 0.0f);
      for (int64_t p_out = 0; p_out < g.P; ++p_out) {
        const PoolSpan hs = pool_span(p_out, g.R, g.stride_h, g.pad_h, g.H);
        for (int64_t q = 0; q < g.Q; ++q) {
          const float yv = yp[p_out * g.Q + q];
          // torch's sign(out) * relu(|out|) has zero derivative at out == 0, which cancels the infinite one of
          // the root: the whole window gets no gradient.
          if (yv == 0.0f) continue;
          const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
          const float scale = area / static_cast<float>(hs.padded * ws.padded);
          const float coef = dyp[p_out * g.Q + q] * scale * power(yv, 1.0f - p);
          for (int64_t h = hs.begin; h < hs.end; ++h)
            for (int64_t w = ws.begin; w < ws.end; ++w) dxp[h * g.W + w] += coef * power(xp[h * g.W + w], p - 1.0f);
        }
      }
    }
  });
}

}  // namespace

LpPool2d::LpPool2d(std::string name, const Pool2dOptions& options)
    : Layer(std::move(name)), options_(resolve_pool2d_options(this->name(), options, /*check_p=*/true)) {}

std::unique_ptr<Layer> LpPool2d::from_config(const LayerConfig& c) {
  Pool2dOptions opt = pool2d_options_from_config(c);
  opt.p = c.get_float("p", 2.0);
  c.finish();
  return std::make_unique<LpPool2d>(c.name(), opt);
}

Shape LpPool2d::output_shape(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return Shape{g.N, g.C, g.P, g.Q};
}

double LpPool2d::forward_flops(const Shape& in) const {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, in);
  return static_cast<double>(g.N * g.C * g.P * g.Q) * static_cast<double>(g.R * g.S);
}

void LpPool2d::forward(const Tensor& x, Tensor& y, const RunContext& /*ctx*/) {
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  y.resize(Shape{g.N, g.C, g.P, g.Q});
  lp_pool2d_forward(x.data(), y.data(), g, static_cast<float>(options_.p));
}

void LpPool2d::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& /*ctx*/) {
  if (dx == nullptr) return;
  const Pool2dGeometry g = pool2d_geometry(name(), options_, x.shape());
  const Shape out{g.N, g.C, g.P, g.Q};
  check_shape(name(), "output", out, y.shape());
  check_shape(name(), "output gradient", out, dy.shape());
  dx->resize(x.shape());
  lp_pool2d_backward(x.data(), y.data(), dy.data(), dx->data(), g, static_cast<float>(options_.p));
}

}  // namespace stride
