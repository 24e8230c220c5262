#include "layers/avg_pool2d.hpp"

#include <algorithm>
#include <cassert>

#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

int64_t divisor(const PoolSpan& hs, const PoolSpan& ws, bool count_include_pad) {
  return count_include_pad ? hs.padded * ws.padded : (hs.end - hs.begin) * (ws.end - ws.begin);
}

// x: (N, C, H, W) -> y: (N, C, P, Q). Sums in float in row-major window order, then divides, as ATen does;
// interior columns keep that order while visiting the window one (h, s) at a time for a whole row of q.
void avg_pool2d_forward(const float* x, float* y, const Pool2dGeometry& g, bool count_include_pad) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const ColumnRange inner = interior_columns(g);
  with_stride(g.stride_w, [&](auto sw) {
    parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const float* xp = x + nc * plane_in;
        for (int64_t p = 0; p < g.P; ++p) {
          const PoolSpan hs = pool_span(p, g.R, g.stride_h, g.pad_h, g.H);
          float* yr = y + nc * plane_out + p * g.Q;
          auto clipped_column = [&](int64_t q) {
            const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
            assert(hs.begin < hs.end && ws.begin < ws.end);
            float sum = 0.0f;
            for (int64_t h = hs.begin; h < hs.end; ++h)
              for (int64_t w = ws.begin; w < ws.end; ++w) sum += xp[h * g.W + w];
            yr[q] = sum / static_cast<float>(divisor(hs, ws, count_include_pad));
          };
          for (int64_t q = 0; q < inner.begin; ++q) clipped_column(q);
          for (int64_t q = inner.end; q < g.Q; ++q) clipped_column(q);
          for (int64_t q = inner.begin; q < inner.end; ++q) yr[q] = 0.0f;
          for (int64_t h = hs.begin; h < hs.end; ++h) {
            for (int64_t s = 0; s < g.S; ++s) {
              const int64_t base = h * g.W + s - g.pad_w;
              for (int64_t q = inner.begin; q < inner.end; ++q) yr[q] += xp[base + q * sw];
            }
          }
          // An interior window spans S real columns, and S padded ones.
          const float div = static_cast<float>(
              divisor(hs, PoolSpan{0, g.S, g.S}, count_include_pad));
          for (int64_t q = inner.begin; q < inner.end; ++q) yr[q] = yr[q] / div;
        }
      }
    });
  });
}

// dy: (N, C, P, Q) -> dx: (N, C, H, W), overwritten. Each dx element adds its windows' shares in a fixed
// order (output rows in order; within a row, one window column s at a time), all inside one task.
void avg_pool2d_backward(const float* dy, float* dx, const Pool2dGeometry& g, bool count_include_pad) {
  const int64_t plane_in = g.H * g.W, plane_out = g.P * g.Q;
  const ColumnRange inner = interior_columns(g);
  with_stride(g.stride_w, [&](auto sw) {
    parallel_for(g.N * g.C, pool_grain(g), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        float* dxp = dx + nc * plane_in;
        std::fill(dxp, dxp + plane_in, 0.0f);
        for (int64_t p = 0; p < g.P; ++p) {
          const PoolSpan hs = pool_span(p, g.R, g.stride_h, g.pad_h, g.H);
          const float* dyr = dy + nc * plane_out + p * g.Q;
          auto clipped_column = [&](int64_t q) {
            const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
            const float share = dyr[q] / static_cast<float>(divisor(hs, ws, count_include_pad));
            for (int64_t h = hs.begin; h < hs.end; ++h)
              for (int64_t w = ws.begin; w < ws.end; ++w) dxp[h * g.W + w] += share;
          };
          for (int64_t q = 0; q < inner.begin; ++q) clipped_column(q);
          for (int64_t q = inner.end; q < g.Q; ++q) clipped_column(q);
          const float div = static_cast<float>(divisor(hs, PoolSpan{0, g.S, g.S}, count_include_pad));
          for (int64_t h = hs.begin; h < hs.end; ++h) {
            for (int64_t s = 0; s < g.S; ++s) {
              // Distinct q hit distinct columns base + q * sw, so this loop has no write conflicts.
              const int64_t base = h * g.W + s - g.pad_w;
              for (int64_t q = inner.begin; q < inner.end; ++q) dxp[base + q * sw] += dyr[q] / div;
            }
          }
        }
      }
    });
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
