#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/bf16.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "layers/flatten.hpp"
#include "layers/linear.hpp"
#include "tests/expect_error.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::check_gradients;
using stride::test::LayerParams;
using stride::test::random_tensor;
using stride::test::tensor_from;
using stride::test::thrown_message;

namespace {

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

TEST_CASE("linear: forward matches torch.nn.functional.linear, with and without bias") {
  const Tensor x = tensor_from(Shape{2, 3}, {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 2.0f});
  const std::vector<float> w = {0.1f, -0.2f, 0.3f, 0.5f, 0.25f, -0.125f, -1.0f, 0.0f, 2.0f, 0.75f, -0.5f, 0.0625f};
  const RunContext ctx;
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    Linear fc("ip1", LinearOptions{4, bias});
    LayerParams params(fc, x.shape());
    params.value("weight") = w;
    if (bias) params.value("bias") = {0.5f, -1.0f, 0.25f, 0.0f};
    Tensor y;
    fc.forward(x, y, ctx);
    REQUIRE(y.shape() == Shape{2, 4});
    // torch.nn.functional.linear(x, W, b) and (x, W), torch 1.13, float32.
    const std::vector<float> expected =
        bias ? std::vector<float>{1.10000002f, -0.375f, 5.25f, -0.0625f, 0.900000036f, -1.625f, 5.25f, -0.875f}
             : std::vector<float>{0.600000024f, 0.625f, 5.0f, -0.0625f, 0.400000036f, -0.625f, 5.0f, -0.875f};
    for (int64_t i = 0; i < 8; ++i) CHECK(y[i] == doctest::Approx(expected[static_cast<size_t>(i)]).epsilon(1e-6));
  }
}

TEST_CASE("linear: a rank-4 input is flattened per sample, as Caffe's InnerProduct does") {
  Linear fc("ip1", LinearOptions{5});
  const Shape in{3, 4, 2, 2};
  CHECK(fc.output_shape(in) == Shape{3, 5});
  CHECK(fc.forward_flops(in) == 2.0 * 3 * 16 * 5);
  const auto specs = fc.param_specs(in);
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "weight");
  CHECK(specs[0].shape == Shape{5, 16});
  CHECK(specs[0].role == ParamRole::learnable);
  CHECK(specs[0].init == Init::pytorch_default);
  CHECK(specs[0].fan_in == 16);
  CHECK(specs[0].fan_out == 5);
  CHECK(specs[0].weight_decay);
  CHECK(specs[1].name == "bias");
  CHECK(specs[1].shape == Shape{5});
  CHECK(specs[1].init == Init::pytorch_default);
  CHECK(specs[1].fan_in == 16);
  CHECK_FALSE(specs[1].weight_decay);

  LayerParams params(fc, in);
  const Tensor x4 = random_tensor(in, 3);
  Tensor x2 = x4;
  x2.reshape(Shape{3, 16});
  Tensor y4, y2;
  fc.forward(x4, y4, RunContext{});
  fc.forward(x2, y2, RunContext{});
  REQUIRE(y4.shape() == Shape{3, 5});
  CHECK(same_bits(y4.data(), y2.data(), 15));
  // Every element against a plain double dot product.
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t k = 0; k < 5; ++k) {
      double s = params.value("bias")[static_cast<size_t>(k)];
      for (int64_t f = 0; f < 16; ++f) s += static_cast<double>(x4[n * 16 + f]) * params.value("weight")[static_cast<size_t>(k * 16 + f)];
      CHECK(y4[n * 5 + k] == doctest::Approx(s).epsilon(1e-5));
    }
  Tensor dx;
  fc.backward(x4, y4, random_tensor(y4.shape(), 4), &dx, RunContext{});
  CHECK(dx.shape() == in);
}

TEST_CASE("linear: gradients match central differences, with and without bias, rank 2 and rank 4") {
  for (bool bias : {true, false})
    for (const Shape& in : {Shape{3, 7}, Shape{3, 2, 2, 2}}) {
      CAPTURE(bias);
      CAPTURE(in.str());
      Linear fc("ip1", LinearOptions{4, bias});
      LayerParams params(fc, in);
      CHECK(params.specs.size() == (bias ? 2u : 1u));
      check_gradients(fc, params, random_tensor(in, 11), RunContext{Mode::train});
    }
}

TEST_CASE("linear: outputs and gradients are bit-identical for 1, 2 and 4 threads") {
  // N=50 spans two batch blocks; out=70 and in=300 span two tiles each way of the weight gradient.
  const Shape in{50, 300};
  const Tensor x = random_tensor(in, 21);
  const Tensor dy = random_tensor(Shape{50, 70}, 22);
  std::vector<Tensor> ys, dxs;
  std::vector<std::vector<float>> dws, dbs;
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    Linear fc("ip1", LinearOptions{70});
    LayerParams params(fc, in);
    Tensor y, dx;
    fc.forward(x, y, RunContext{Mode::train});
    fc.backward(x, y, dy, &dx, RunContext{Mode::train});
    ys.push_back(y);
    dxs.push_back(dx);
    dws.push_back(params.grad("weight"));
    dbs.push_back(params.grad("bias"));
  }
  for (size_t t = 1; t < ys.size(); ++t) {
    CHECK(same_bits(ys[0].data(), ys[t].data(), static_cast<size_t>(ys[0].numel())));
    CHECK(same_bits(dxs[0].data(), dxs[t].data(), static_cast<size_t>(dxs[0].numel())));
    CHECK(dws[0] == dws[t]);
    CHECK(dbs[0] == dbs[t]);
  }
  // The fixed-tile weight gradient is also right: spot-check every element against a double sum.
  for (int64_t k = 0; k < 70; ++k)
    for (int64_t f = 0; f < 300; f += 37) {
      double s = 0;
      for (int64_t n = 0; n < 50; ++n) s += static_cast<double>(dy[n * 70 + k]) * x[n * 300 + f];
      CHECK(dws[0][static_cast<size_t>(k * 300 + f)] == doctest::Approx(s).epsilon(1e-5));
    }
}

TEST_CASE("linear forward: a micro-batch and a larger batch give each row the same FMA chain, from the bias") {
  // A forward of at most one row block (a micro-batch) transposes W tile by tile inside the product; a larger
  // batch transposes W once. Both must give every output the chain b[o] + x[n][0] W[o][0] + ... in order.
  const int64_t N = 50, IN = 300, OUT = 70, MICRO = 16;
  const Tensor x = random_tensor(Shape{N, IN}, 41);
  Tensor micro(Shape{MICRO, IN});
  std::memcpy(micro.data(), x.data() + 20 * IN, static_cast<size_t>(MICRO * IN) * sizeof(float));
  Linear fc("ip1", LinearOptions{OUT});
  LayerParams params(fc, Shape{N, IN});
  Tensor y_all, y_micro;
  fc.forward(x, y_all, RunContext{Mode::train});
  fc.forward(micro, y_micro, RunContext{Mode::train});
  const std::vector<float> w = params.value("weight"), b = params.value("bias");
  auto chain = [&](int64_t n, int64_t o) {
    float acc = b[static_cast<size_t>(o)];
    for (int64_t i = 0; i < IN; ++i) acc = std::fma(x[n * IN + i], w[static_cast<size_t>(o * IN + i)], acc);
    return acc;
  };
  int64_t wrong = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OUT; ++o) {
      const float want = chain(n, o);
      wrong += !same_bits(&y_all[n * OUT + o], &want, 1);
      if (n >= 20 && n < 20 + MICRO) wrong += !same_bits(&y_micro[(n - 20) * OUT + o], &want, 1);
    }
  CHECK(wrong == 0);
}

TEST_CASE("linear in bf16: a double reference on bf16-rounded operands, the same bits for 1, 2 and 4 threads") {
  // Odd sizes everywhere (N = 51, in = 301, out = 71): every pair dimension ends in a half-empty pair.
  const int64_t N = 51, IN = 301, OUT = 71;
  const Tensor x = random_tensor(Shape{N, IN}, 31);
  const Tensor dy = random_tensor(Shape{N, OUT}, 32);
  RunContext ctx{Mode::train};
  ctx.precision = Precision::bf16;
  std::vector<std::vector<float>> runs;
  std::vector<float> w, b;
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    Linear fc("ip1", LinearOptions{OUT});
    LayerParams params(fc, Shape{N, IN});
    Tensor y, dx;
    fc.forward(x, y, ctx);
    fc.backward(x, y, dy, &dx, ctx);
    std::vector<float> all(y.span().begin(), y.span().end());
    all.insert(all.end(), dx.span().begin(), dx.span().end());
    for (const auto& g : params.grads) all.insert(all.end(), g.begin(), g.end());
    runs.push_back(all);
    w = params.value("weight");
    b = params.value("bias");
  }
  CHECK(runs[0] == runs[1]);
  CHECK(runs[0] == runs[2]);
  auto r = [](float v) { return static_cast<double>(round_bf16(v)); };
  double worst = 0, worst_unrounded = 0;
  auto check = [&](float got, double want, double unrounded) {
    worst = std::max(worst, std::abs(got - want) / (1.0 + std::abs(want)));
    worst_unrounded = std::max(worst_unrounded, std::abs(got - unrounded) / (1.0 + std::abs(unrounded)));
  };
  const std::vector<float>& all = runs[0];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OUT; ++o) {
      double s = b[static_cast<size_t>(o)], u = s;
      for (int64_t i = 0; i < IN; ++i) {
        s += r(x[n * IN + i]) * r(w[static_cast<size_t>(o * IN + i)]);
        u += static_cast<double>(x[n * IN + i]) * w[static_cast<size_t>(o * IN + i)];
      }
      check(all[static_cast<size_t>(n * OUT + o)], s, u);
    }
  CHECK(worst_unrounded > 1e-4);  // the rounding did happen
  const size_t dx0 = static_cast<size_t>(N * OUT), dw0 = dx0 + static_cast<size_t>(N * IN);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < IN; ++i) {
      double s = 0;
      for (int64_t o = 0; o < OUT; ++o) s += r(dy[n * OUT + o]) * r(w[static_cast<size_t>(o * IN + i)]);
      check(all[dx0 + static_cast<size_t>(n * IN + i)], s, s);
    }
  for (int64_t o = 0; o < OUT; ++o)
    for (int64_t i = 0; i < IN; ++i) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += r(dy[n * OUT + o]) * r(x[n * IN + i]);
      check(all[dw0 + static_cast<size_t>(o * IN + i)], s, s);
    }
  CHECK(worst < 1e-5);
}

TEST_CASE("linear: shape and config errors name the layer") {
  Linear fc("ip1", LinearOptions{4});
  LayerParams params(fc, Shape{2, 3});
  Tensor y;
  CHECK(thrown_message<Error>([&] { fc.forward(Tensor(Shape{2, 4}), y, RunContext{}); }) ==
        "ip1: expected input with 3 features per sample, got (N=2, F=4)");
  CHECK_THROWS_AS(fc.forward(Tensor(Shape{2, 4}), y, RunContext{}), ShapeError);
  CHECK(thrown_message<Error>([&] { fc.output_shape(Shape{6}); }) ==
        "ip1: expected input of rank >= 2 (N, ...), got (6)");

  auto built = Linear::from_config(LayerConfig::parse(R"({"name": "ip2", "type": "linear", "out_features": 10,
                                                          "bias": false, "init": "xavier_uniform"})"));
  auto* lin = dynamic_cast<Linear*>(built.get());
  REQUIRE(lin);
  CHECK(lin->name() == "ip2");
  CHECK(lin->type() == "linear");
  CHECK(lin->options().out_features == 10);
  CHECK_FALSE(lin->options().bias);
  CHECK(lin->options().init == Init::xavier_uniform);
  auto defaults = Linear::from_config(LayerConfig::parse(R"({"name": "fc", "type": "linear", "out_features": 3})"));
  CHECK(dynamic_cast<Linear&>(*defaults).options().bias);
  CHECK(dynamic_cast<Linear&>(*defaults).options().init == Init::pytorch_default);
  CHECK_THROWS_AS(Linear::from_config(LayerConfig::parse(R"({"name": "fc", "type": "linear"})")), ConfigError);
  CHECK_THROWS_AS(Linear::from_config(LayerConfig::parse(R"({"name": "fc", "type": "linear", "out_features": 3, "bais": true})")),
                  ConfigError);
  CHECK_THROWS_AS(Linear::from_config(LayerConfig::parse(R"({"name": "fc", "type": "linear", "out_features": 0})")),
                  ConfigError);
}

TEST_CASE("flatten: (N, C, H, W) -> (N, C*H*W) copies values in NCHW order, backward copies back") {
  Flatten flat("flat");
  CHECK(flat.type() == "flatten");
  CHECK(flat.output_shape(Shape{2, 3, 4, 5}) == Shape{2, 60});
  CHECK(flat.output_shape(Shape{2, 7}) == Shape{2, 7});
  CHECK(thrown_message<Error>([&] { flat.output_shape(Shape{6}); }) ==
        "flat: expected input of rank >= 2 (N, ...), got (6)");
  const Tensor x = random_tensor(Shape{2, 3, 2, 2}, 5);
  Tensor y;
  flat.forward(x, y, RunContext{});
  REQUIRE(y.shape() == Shape{2, 12});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w) CHECK(y[n * 12 + (c * 2 + h) * 2 + w] == x.at(n, c, h, w));
  LayerParams params(flat, x.shape());
  check_gradients(flat, params, x, RunContext{});
  CHECK_THROWS_AS(flat.backward(x, y, Tensor(Shape{2, 11}), nullptr, RunContext{}), ShapeError);
  CHECK(Flatten::from_config(LayerConfig::parse(R"({"name": "f", "type": "flatten"})"))->type() == "flatten");
}
