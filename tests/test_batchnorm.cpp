#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "layers/batchnorm.hpp"
#include "tests/expect_error.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::check_gradients;
using stride::test::LayerParams;
using stride::test::random_tensor;
using stride::test::tensor_from;
using stride::test::thrown_message;

namespace {

// (N=2, C=2, H=1, W=2): channel 0 holds {1, 2, 3, 6} (mean 3, biased var 3.5, unbiased 14/3), channel 1 holds
// {-1, 0, 1, 8} (mean 2, biased var 12.5, unbiased 50/3).
Tensor tiny_input() { return tensor_from(Shape{2, 2, 1, 2}, {1.0f, 2.0f, -1.0f, 0.0f, 3.0f, 6.0f, 1.0f, 8.0f}); }

void set_tiny_params(LayerParams& p) {
  p.value("weight") = {2.0f, 0.5f};
  p.value("bias") = {0.5f, -1.0f};
  p.value("running_mean") = {0.0f, 0.0f};
  p.value("running_var") = {1.0f, 1.0f};
}

}  // namespace

TEST_CASE("batchnorm2d: hand-computed train forward and PyTorch's running-stat update (unbiased variance)") {
  BatchNorm bn("bn1", BatchNormKind::d2, BatchNormOptions{});
  const Tensor x = tiny_input();
  LayerParams params(bn, x.shape());
  set_tiny_params(params);
  Tensor y;
  bn.forward(x, y, RunContext{Mode::train});
  REQUIRE(y.shape() == x.shape());
  // By hand: y = (x - mean) / sqrt(var + 1e-5) * gamma + beta with the per-channel batch statistics above.
  const double mean[2] = {3.0, 2.0}, var[2] = {3.5, 12.5}, gamma[2] = {2.0, 0.5}, beta[2] = {0.5, -1.0};
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t w = 0; w < 2; ++w) {
        const double expected = (x.at(n, c, 0, w) - mean[c]) / std::sqrt(var[c] + 1e-5) * gamma[c] + beta[c];
        CHECK(y.at(n, c, 0, w) == doctest::Approx(expected).epsilon(1e-6));
      }
  // The same from torch.nn.BatchNorm2d(2) in train mode (weight [2, 0.5], bias [0.5, -1]), torch 1.13.
  const std::vector<float> torch_y = {-1.6380868f, -0.569043398f, -1.42426395f, -1.28284264f,
                                      0.5f,        3.70713019f,   -1.14142132f, -0.151472211f};
  for (int64_t i = 0; i < 8; ++i) CHECK(y[i] == doctest::Approx(torch_y[static_cast<size_t>(i)]).epsilon(1e-6));
  // running = 0.9 * running + 0.1 * stat, unbiased variance: mean 0.1 * [3, 2]; var 0.9 + 0.1 * [14/3, 50/3].
  // torch gives running_mean [0.300000012, 0.200000003], running_var [1.36666667, 2.5666666].
  CHECK(params.value("running_mean")[0] == doctest::Approx(0.3).epsilon(1e-7));
  CHECK(params.value("running_mean")[1] == doctest::Approx(0.2).epsilon(1e-7));
  CHECK(params.value("running_var")[0] == doctest::Approx(0.9 + 0.1 * 14.0 / 3.0).epsilon(1e-7));
  CHECK(params.value("running_var")[1] == doctest::Approx(0.9 + 0.1 * 50.0 / 3.0).epsilon(1e-7));
  CHECK(params.value("running_var")[0] == doctest::Approx(1.36666667f).epsilon(1e-7));
  CHECK(params.value("running_var")[1] == doctest::Approx(2.5666666f).epsilon(1e-7));
  // A second step compounds: running_mean = 0.9 * 0.3 + 0.1 * 3.
  bn.forward(x, y, RunContext{Mode::train});
  CHECK(params.value("running_mean")[0] == doctest::Approx(0.57).epsilon(1e-6));
  // The learnable parameters are untouched by forward.
  CHECK(params.value("weight") == std::vector<float>{2.0f, 0.5f});
}

TEST_CASE("batchnorm2d: eval mode normalizes with the running statistics (torch golden) and leaves them alone") {
  BatchNorm bn("bn1", BatchNormKind::d2, BatchNormOptions{});
  const Tensor x = tiny_input();
  LayerParams params(bn, x.shape());
  set_tiny_params(params);
  params.value("running_mean") = {0.5f, -1.0f};
  params.value("running_var") = {4.0f, 0.25f};
  Tensor y;
  bn.forward(x, y, RunContext{Mode::eval});
  // torch.nn.BatchNorm2d(2).eval() with running_mean [0.5, -1], running_var [4, 0.25], weight [2, 0.5],
  // bias [0.5, -1], torch 1.13.
  const std::vector<float> torch_y = {0.999999404f, 1.99999821f, -1.0f,        -2.00271606e-05f,
                                      2.99999714f,  5.99999332f, 0.999959946f, 7.99981976f};
  for (int64_t i = 0; i < 8; ++i)
    CHECK(y[i] == doctest::Approx(torch_y[static_cast<size_t>(i)]).epsilon(1e-6).scale(1e-3));
  CHECK(params.value("running_mean") == std::vector<float>{0.5f, -1.0f});
  CHECK(params.value("running_var") == std::vector<float>{4.0f, 0.25f});
}

TEST_CASE("batchnorm: parameter specs, with and without affine") {
  BatchNorm bn("bn1", BatchNormKind::d2, BatchNormOptions{});
  auto specs = bn.param_specs(Shape{8, 3, 4, 4});
  REQUIRE(specs.size() == 4);
  const char* names[] = {"weight", "bias", "running_mean", "running_var"};
  const ParamRole roles[] = {ParamRole::learnable, ParamRole::learnable, ParamRole::state, ParamRole::state};
  const Init inits[] = {Init::ones, Init::zeros, Init::zeros, Init::ones};
  for (size_t i = 0; i < 4; ++i) {
    CHECK(specs[i].name == names[i]);
    CHECK(specs[i].shape == Shape{3});
    CHECK(specs[i].role == roles[i]);
    CHECK(specs[i].init == inits[i]);
    CHECK_FALSE(specs[i].weight_decay);
  }
  CHECK(bn.forward_flops(Shape{8, 3, 4, 4}) == 4.0 * 8 * 3 * 16);

  BatchNorm plain("bn2", BatchNormKind::d1, BatchNormOptions{1e-5, 0.1, false});
  specs = plain.param_specs(Shape{8, 5});
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "running_mean");
  CHECK(specs[1].name == "running_var");
  for (const auto& s : specs) {
    CHECK(s.role == ParamRole::state);
    CHECK(s.shape == Shape{5});
  }
  // Without affine the train output is the plain normalized value.
  const Tensor x = tensor_from(Shape{4, 1}, {1.0f, 2.0f, 3.0f, 6.0f});
  BatchNorm one("bn3", BatchNormKind::d1, BatchNormOptions{1e-5, 0.1, false});
  LayerParams p(one, x.shape());
  Tensor y;
  one.forward(x, y, RunContext{Mode::train});
  for (int64_t i = 0; i < 4; ++i) CHECK(y[i] == doctest::Approx((x[i] - 3.0) / std::sqrt(3.5 + 1e-5)).epsilon(1e-6));
}

TEST_CASE("batchnorm: gradients match central differences in train and eval, 1d and 2d, affine or not") {
  for (BatchNormKind kind : {BatchNormKind::d2, BatchNormKind::d1})
    for (bool affine : {true, false})
      for (Mode mode : {Mode::train, Mode::eval}) {
        const Shape in = kind == BatchNormKind::d2 ? Shape{3, 2, 2, 3} : Shape{6, 4};
        CAPTURE(in.str());
        CAPTURE(affine);
        CAPTURE(mode == Mode::train);
        BatchNorm bn("bn1", kind, BatchNormOptions{1e-5, 0.1, affine});
        LayerParams params(bn, in);
        check_gradients(bn, params, random_tensor(in, 51), RunContext{mode});
      }
}

TEST_CASE("batchnorm: outputs, gradients and running stats are bit-identical for 1, 2 and 4 threads") {
  const Shape in{16, 8, 6, 6};
  const Tensor x = random_tensor(in, 61, -2.0f, 3.0f);
  const Tensor dy = random_tensor(in, 62);
  std::vector<Tensor> ys, dxs;
  std::vector<std::vector<std::vector<float>>> values, grads;
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    BatchNorm bn("bn1", BatchNormKind::d2, BatchNormOptions{});
    LayerParams params(bn, in);
    Tensor y, dx;
    bn.forward(x, y, RunContext{Mode::train});
    bn.backward(x, y, dy, &dx, RunContext{Mode::train});
    ys.push_back(y);
    dxs.push_back(dx);
    values.push_back(params.values);
    grads.push_back(params.grads);
  }
  for (size_t t = 1; t < ys.size(); ++t) {
    CHECK(std::memcmp(ys[0].data(), ys[t].data(), static_cast<size_t>(x.numel()) * 4) == 0);
    CHECK(std::memcmp(dxs[0].data(), dxs[t].data(), static_cast<size_t>(x.numel()) * 4) == 0);
    CHECK(values[0] == values[t]);
    CHECK(grads[0] == grads[t]);
  }
}

TEST_CASE("batchnorm: shape and config errors name the layer") {
  BatchNorm bn("bn1", BatchNormKind::d2, BatchNormOptions{});
  LayerParams params(bn, Shape{2, 2, 1, 2});
  Tensor y;
  CHECK(thrown_message<Error>([&] { bn.forward(Tensor(Shape{2, 3, 1, 2}), y, RunContext{}); }) ==
        "bn1: expected input with 2 channels, got (N=2, C=3, H=1, W=2)");
  CHECK(thrown_message<Error>([&] { bn.output_shape(Shape{2, 2}); }) ==
        "bn1: expected input of rank 4 (N, C, H, W), got (N=2, F=2)");
  BatchNorm bn1d("bn2", BatchNormKind::d1, BatchNormOptions{});
  CHECK(thrown_message<Error>([&] { bn1d.output_shape(Shape{2, 2, 1, 1}); }) ==
        "bn2: expected input of rank 2 (N, C), got (N=2, C=2, H=1, W=1)");
  LayerParams p1(bn1d, Shape{1, 2});
  CHECK_THROWS_AS(bn1d.forward(Tensor(Shape{1, 2}), y, RunContext{Mode::train}), ShapeError);  // 1 value per channel
  bn1d.forward(Tensor(Shape{1, 2}), y, RunContext{Mode::eval});                                  // fine in eval

  auto b2 = BatchNorm::from_config(LayerConfig::parse(
      R"({"name": "bn1", "type": "batchnorm2d", "eps": 0.001, "momentum": 0.01, "affine": false})"));
  CHECK(b2->type() == "batchnorm2d");
  auto& o = dynamic_cast<BatchNorm&>(*b2).options();
  CHECK(o.eps == 0.001);
  CHECK(o.momentum == 0.01);
  CHECK_FALSE(o.affine);
  auto b1 = BatchNorm::from_config(LayerConfig::parse(R"({"name": "bn2", "type": "batchnorm1d"})"));
  CHECK(b1->type() == "batchnorm1d");
  CHECK(dynamic_cast<BatchNorm&>(*b1).options().eps == 1e-5);
  CHECK(dynamic_cast<BatchNorm&>(*b1).options().momentum == 0.1);
  CHECK(dynamic_cast<BatchNorm&>(*b1).options().affine);
  CHECK_THROWS_AS(BatchNorm::from_config(LayerConfig::parse(R"({"name": "b", "type": "batchnorm2d", "eps": -1})")),
                  ConfigError);
  CHECK_THROWS_AS(BatchNorm::from_config(LayerConfig::parse(R"({"name": "b", "type": "batchnorm2d", "momentun": 0.1})")),
                  ConfigError);
}
