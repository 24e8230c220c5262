#pragma once
// Test helpers shared by the layer tests: parameter buffers for a lone layer, seeded random tensors, and a
// central-difference gradient check that also verifies the backward contract (dx overwritten, parameter
// gradients accumulated with +=).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/rng.hpp"
#include "framework/core/tensor.hpp"

namespace stride::test {

// Uniform values in [lo, hi) from the counter-based RNG.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(shape);
  RandomStream rng(seed, 99u, 0, 0);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(static_cast<uint64_t>(i), lo, hi);
  return t;
}

inline Tensor tensor_from(const Shape& shape, const std::vector<float>& values) {
  REQUIRE(static_cast<int64_t>(values.size()) == shape.numel());
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = values[static_cast<size_t>(i)];
  return t;
}

// Flat parameter storage for one layer outside a network: values random in [-1, 1) (state 'running_var'
// in [0.5, 1.5) so it stays positive), gradients zero.
struct LayerParams {
  std::vector<ParamSpec> specs;
  std::vector<std::vector<float>> values, grads;
  std::vector<ParamView> views;

  LayerParams(Layer& layer, const Shape& in, uint64_t seed = 7) {
    specs = layer.param_specs(in);
    for (size_t p = 0; p < specs.size(); ++p) {
      const auto n = static_cast<size_t>(specs[p].shape.numel());
      RandomStream rng(seed, 98u, static_cast<uint32_t>(p), 0);
      std::vector<float> v(n);
      const bool positive = specs[p].name.find("var") != std::string::npos;
      for (size_t i = 0; i < n; ++i) v[i] = positive ? rng.uniform(i, 0.5f, 1.5f) : rng.uniform(i, -1.0f, 1.0f);
      values.push_back(std::move(v));
      grads.emplace_back(specs[p].role == ParamRole::learnable ? n : 0, 0.0f);
    }
    for (size_t p = 0; p < specs.size(); ++p) views.push_back({std::span<float>(values[p]), std::span<float>(grads[p])});
    layer.bind(views);
  }
  std::vector<float>& value(const std::string& name) { return values[index(name)]; }
  std::vector<float>& grad(const std::string& name) { return grads[index(name)]; }
  size_t index(const std::string& name) const {
    for (size_t p = 0; p < specs.size(); ++p)
      if (specs[p].name == name) return p;
    FAIL("no parameter named " << name);
    return 0;
  }
};

struct GradCheckOptions {
  double eps = 1e-2;   // central-difference step
  double atol = 2e-3;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 2e-2;
  uint64_t seed = 1234;
};

// Checks dL/dx and dL/dparam of `layer` at x for L = sum(y * r), r a fixed random tensor, against central
// differences computed in double from float forwards. Learnable parameters only; `params` must be bound.
inline void check_gradients(Layer& layer, LayerParams& params, const Tensor& x_in, const RunContext& ctx,
                            GradCheckOptions opt = {}) {
  Tensor x = x_in;
  Tensor y;
  layer.forward(x, y, ctx);
  const Tensor r = random_tensor(y.shape(), opt.seed);
  auto loss = [&]() {
    Tensor yy;
    layer.forward(x, yy, ctx);
    double s = 0;
    for (int64_t i = 0; i < yy.numel(); ++i) s += static_cast<double>(yy[i]) * r[i];
    return s;
  };
  // Analytic: dx pre-filled with garbage must be overwritten; grads pre-filled with 0.25 must be added to.
  constexpr float kPrefill = 0.25f;
  for (auto& g : params.grads) std::fill(g.begin(), g.end(), kPrefill);
  Tensor dx(x.shape(), 777.0f);
  layer.forward(x, y, ctx);
  layer.backward(x, y, r, &dx, ctx);
  REQUIRE(dx.shape() == x.shape());

  auto compare = [&](double analytic, double numeric, const std::string& what, int64_t i) {
    const double err = std::abs(analytic - numeric);
    if (err > opt.atol + opt.rtol * std::abs(numeric)) {
      FAIL_CHECK(layer.name() << ": " << what << "[" << i << "] analytic " << analytic << " vs numeric " << numeric);
      return false;
    }
    return true;
  };
  int failures = 0;
  for (int64_t i = 0; i < x.numel() && failures < 5; ++i) {
    const float saved = x[i];
    x[i] = saved + static_cast<float>(opt.eps);
    const double lp = loss();
    x[i] = saved - static_cast<float>(opt.eps);
    const double lm = loss();
    x[i] = saved;
    const double h = (static_cast<double>(saved + static_cast<float>(opt.eps)) -
                      static_cast<double>(saved - static_cast<float>(opt.eps)));
    if (!compare(dx[i], (lp - lm) / h, "dx", i)) ++failures;
  }
  for (size_t p = 0; p < params.specs.size(); ++p) {
    if (params.specs[p].role != ParamRole::learnable) continue;
    auto& v = params.values[p];
    for (size_t i = 0; i < v.size() && failures < 5; ++i) {
      const float saved = v[i];
      v[i] = saved + static_cast<float>(opt.eps);
      const double lp = loss();
      v[i] = saved - static_cast<float>(opt.eps);
      const double lm = loss();
      v[i] = saved;
      const double h = static_cast<double>(saved + static_cast<float>(opt.eps)) -
                       static_cast<double>(saved - static_cast<float>(opt.eps));
      if (!compare(params.grads[p][i] - kPrefill, (lp - lm) / h, "d" + params.specs[p].name,
                   static_cast<int64_t>(i)))
        ++failures;
    }
  }
  CHECK(failures == 0);
}

}  // namespace stride::test
