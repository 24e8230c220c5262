#include "layers/global_avg_pool2d.hpp"

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

// About 16k elements per task; any grain gives the same results.
int64_t plane_grain(int64_t plane) { return plane >= 16384 ? 1 : 16384 / (plane > 0 ? plane : 1); }

// x: (N, C, H, W) -> y: (N, C, 1, 1). A float sum in row-major order, then one division, as ATen does.
void global_avg_pool2d_forward(const float* x, float* y, int64_t planes, int64_t plane) {
  parallel_for(planes, plane_grain(plane), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float* xp = x + nc * plane;
      float sum = 0.0f;
      for (int64_t i = 0; i < plane; ++i) sum += xp[i];
      y[nc] = sum / static_cast<float>(plane);
    }
  });
}

// dy: (N, C, 1, 1) -> dx: (N, C, H, W), overwritten.
void global_avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t plane) {
  parallel_for(planes, plane_grain(plane), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float share = dy[nc] / static_cast<float>(plane);
      float* dxp = dx + nc * plane;
      for (int64_t i = 0; i < plane; ++i) dxp[i] = share;
    }
  });
}

}  // namespace

std::unique_ptr<Layer> GlobalAvgPool2d::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<GlobalAvgPool2d>(c.name());
}

Shape GlobalAvgPool2d::output_shape(const Shape& in) const {
  if (in.rank != 4) throw ShapeError(name() + ": expected input of rank 4 (N, C, H, W), got " + in.str());
  if (in[2] < 1 || in[3] < 1) throw ShapeError(name() + ": expected a non-empty H x W plane, got " + in.str());
  return Shape{in[0], in[1], 1, 1};
}

double GlobalAvgPool2d::forward_flops(const Shape& in) const {
  output_shape(in);
  return static_cast<double>(in.numel());
}

void GlobalAvgPool2d::forward(const Tensor& x, Tensor& y, const RunContext& /*ctx*/) {
  y.resize(output_shape(x.shape()));
  const Shape& s = x.shape();
  global_avg_pool2d_forward(x.data(), y.data(), s[0] * s[1], s[2] * s[3]);
}

void GlobalAvgPool2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx,
                               const RunContext& /*ctx*/) {
  if (dx == nullptr) return;
  check_shape(name(), "output gradient", output_shape(x.shape()), dy.shape());
  const Shape& s = x.shape();
  dx->resize(s);
  global_avg_pool2d_backward(dy.data(), dx->data(), s[0] * s[1], s[2] * s[3]);
}

}  // namespace stride
