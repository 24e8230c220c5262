#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "layers/relu.hpp"
#include "layers/sigmoid.hpp"
#include "layers/tanh.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::check_gradients;
using stride::test::LayerParams;
using stride::test::random_tensor;
using stride::test::tensor_from;

namespace {

const std::vector<float> kInput = {-3.0f, -1.0f, -0.5f, 0.25f, 1.0f, 2.5f};

void check_golden(Layer& layer, const std::vector<float>& expected) {
  // Same values at rank 1, 2 and 4: elementwise layers accept any shape.
  for (const Shape& s : {Shape{6}, Shape{2, 3}, Shape{1, 2, 1, 3}}) {
    CAPTURE(s.str());
    Tensor y;
    layer.forward(tensor_from(s, kInput), y, RunContext{});
    REQUIRE(y.shape() == s);
    for (int64_t i = 0; i < 6; ++i) CHECK(y[i] == doctest::Approx(expected[static_cast<size_t>(i)]).epsilon(1e-6));
  }
}

}  // namespace

TEST_CASE("relu, sigmoid, tanh: golden values from torch.relu, torch.sigmoid, torch.tanh") {
  // torch 1.13, float32, on x = [-3, -1, -0.5, 0.25, 1, 2.5].
  Relu relu("relu1");
  check_golden(relu, {0.0f, 0.0f, 0.0f, 0.25f, 1.0f, 2.5f});
  Sigmoid sigmoid("sig1");
  check_golden(sigmoid, {0.0474258736f, 0.268941432f, 0.377540678f, 0.562176526f, 0.731058598f, 0.924141824f});
  Tanh tanh_layer("tanh1");
  check_golden(tanh_layer, {-0.995054781f, -0.761594176f, -0.462117165f, 0.244918659f, 0.761594176f, 0.986614287f});
  // Saturation stays finite.
  Tensor y;
  sigmoid.forward(tensor_from(Shape{2}, {-200.0f, 200.0f}), y, RunContext{});
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == 1.0f);
}

TEST_CASE("relu: the gradient at exactly 0 is 0, as in PyTorch") {
  Relu relu("relu1");
  const Tensor x = tensor_from(Shape{1, 4}, {0.0f, 1.0f, -1.0f, -0.0f});
  Tensor y, dx(Shape{1, 4}, 9.0f);
  relu.forward(x, y, RunContext{});
  relu.backward(x, y, Tensor(Shape{1, 4}, 1.0f), &dx, RunContext{});
  CHECK(dx[0] == 0.0f);
  CHECK(dx[1] == 1.0f);
  CHECK(dx[2] == 0.0f);
  CHECK(dx[3] == 0.0f);
}

TEST_CASE("relu, sigmoid, tanh: gradients match central differences") {
  // ReLU inputs kept at |x| >= 0.1, ten times the difference step, so no difference straddles the kink.
  Tensor x = random_tensor(Shape{2, 3, 2, 3}, 31);
  Tensor away = x;
  for (int64_t i = 0; i < away.numel(); ++i) away[i] = std::copysign(0.1f + std::abs(away[i]), away[i]);
  Relu relu("relu1");
  Sigmoid sigmoid("sig1");
  Tanh tanh_layer("tanh1");
  for (Layer* layer : std::vector<Layer*>{&relu, &sigmoid, &tanh_layer}) {
    CAPTURE(layer->name());
    LayerParams params(*layer, x.shape());
    check_gradients(*layer, params, layer == &relu ? away : x, RunContext{Mode::train});
    // Any rank: the same check on (N, F).
    Tensor x2 = layer == &relu ? away : x;
    x2.reshape(Shape{2, 18});
    check_gradients(*layer, params, x2, RunContext{Mode::train});
  }
}

TEST_CASE("relu, sigmoid, tanh: outputs and gradients are bit-identical for 1, 2 and 4 threads") {
  const Shape s{4, 8, 32, 32};  // 32768 elements: several parallel blocks
  const Tensor x = random_tensor(s, 41, -4.0f, 4.0f);
  const Tensor dy = random_tensor(s, 42);
  for (const char* type : {"relu", "sigmoid", "tanh"}) {
    CAPTURE(type);
    std::vector<Tensor> ys, dxs;
    for (int threads : {1, 2, 4}) {
      ThreadLimit limit(threads);
      std::unique_ptr<Layer> layer;
      const std::string t = type;
      if (t == "relu") layer = std::make_unique<Relu>("a");
      if (t == "sigmoid") layer = std::make_unique<Sigmoid>("a");
      if (t == "tanh") layer = std::make_unique<Tanh>("a");
      Tensor y, dx;
      layer->forward(x, y, RunContext{});
      layer->backward(x, y, dy, &dx, RunContext{});
      ys.push_back(y);
      dxs.push_back(dx);
    }
    for (size_t t = 1; t < ys.size(); ++t) {
      CHECK(std::memcmp(ys[0].data(), ys[t].data(), static_cast<size_t>(x.numel()) * 4) == 0);
      CHECK(std::memcmp(dxs[0].data(), dxs[t].data(), static_cast<size_t>(x.numel()) * 4) == 0);
    }
  }
}

TEST_CASE("relu, sigmoid, tanh: from_config and shape errors") {
  CHECK(Relu::from_config(LayerConfig::parse(R"({"name": "r", "type": "relu"})"))->type() == "relu");
  CHECK(Sigmoid::from_config(LayerConfig::parse(R"({"name": "s", "type": "sigmoid"})"))->type() == "sigmoid");
  CHECK(Tanh::from_config(LayerConfig::parse(R"({"name": "t", "type": "tanh"})"))->type() == "tanh");
  CHECK_THROWS_AS(Relu::from_config(LayerConfig::parse(R"({"name": "r", "type": "relu", "inplace": true})")),
                  ConfigError);
  Tanh t("tanh1");
  const Tensor x(Shape{2, 3});
  Tensor y;
  t.forward(x, y, RunContext{});
  try {
    t.backward(x, y, Tensor(Shape{3, 2}), nullptr, RunContext{});
    FAIL("no throw");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()) == "tanh1: expected output gradient (N=2, F=3), got (N=3, F=2)");
  }
}
