#include "layers/dropout.hpp"

#include <cstring>
#include <string>

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"

namespace stride {
namespace {

void check_p(double p, const std::string& where) {
  if (!(p >= 0.0 && p < 1.0)) throw ConfigError(where + "p: expected 0 <= p < 1, got " + std::to_string(p));
}

}  // namespace

Dropout::Dropout(std::string name, DropoutOptions options)
    : Layer(std::move(name)), options_(options), purpose_(layer_purpose(this->name())) {
  check_p(options_.p, this->name() + ": ");
}

std::unique_ptr<Layer> Dropout::from_config(const LayerConfig& c) {
  DropoutOptions o;
  o.p = c.get_float("p", 0.5);
  c.finish();
  check_p(o.p, c.context());
  return std::make_unique<Dropout>(c.name(), o);
}

Shape Dropout::output_shape(const Shape& in) const {
  if (in.rank < 1) throw ShapeError(name() + ": expected input of rank >= 1 (N, ...), got " + in.str());
  return in;
}

// x: (N, ...) -> y: (N, ...); one task per block of samples, mask drawn per (sample, element)
void Dropout::forward(const Tensor& x, Tensor& y, const RunContext& ctx) {
  output_shape(x.shape());
  y.resize(x.shape());
  masked_ = ctx.mode == Mode::train && options_.p > 0.0;
  if (!masked_) {
    if (x.numel() > 0) std::memcpy(y.data(), x.data(), static_cast<size_t>(x.numel()) * sizeof(float));
    return;
  }
  const int64_t N = x.shape()[0], F = x.shape().per_sample();
  mask_.resize(static_cast<size_t>(N * F));
  const float p = static_cast<float>(options_.p);
  // As PyTorch: the kept scale is 1/(1-p) rounded to float, and y = x * scale.
  const float scale = 1.0f / (1.0f - p);
  const float* xp = x.data();
  float* yp = y.data();
  float* mp = mask_.data();
  parallel_for(N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const RandomStream rng(ctx.seed, purpose_, ctx.epoch, static_cast<uint32_t>(ctx.first_sample + n));
      float* m = mp + n * F;
      // Element e uses word e of the stream, four words per Philox call.
      for (int64_t b = 0; b * 4 < F; ++b) {
        const auto words = rng.block(static_cast<uint64_t>(b));
        for (int64_t k = 0; k < 4 && b * 4 + k < F; ++k)
          m[b * 4 + k] = RandomStream::to_uniform(words[static_cast<size_t>(k)]) < p ? 0.0f : scale;
      }
      const float* xs = xp + n * F;
      float* ys = yp + n * F;
      for (int64_t e = 0; e < F; ++e) ys[e] = xs[e] * m[e];
    }
  });
}

// dy: (N, ...) -> dx: (N, ...) = dy * mask
void Dropout::backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, const RunContext&) {
  check_shape(name(), "output gradient", x.shape(), dy.shape());
  if (!dx) return;
  dx->resize(x.shape());
  const int64_t n = dy.numel();
  if (!masked_) {
    if (n > 0) std::memcpy(dx->data(), dy.data(), static_cast<size_t>(n) * sizeof(float));
    return;
  }
  if (static_cast<int64_t>(mask_.size()) != n)
    throw ShapeError(name() + ": backward input " + x.shape().str() + " does not match the last forward's " +
                     std::to_string(mask_.size()) + " elements");
  const float* dyp = dy.data();
  const float* mp = mask_.data();
  float* dxp = dx->data();
  parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dxp[i] = dyp[i] * mp[i];
  });
}

}  // namespace stride
