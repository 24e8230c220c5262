#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "layers/softmax_cross_entropy.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::random_tensor;
using stride::test::tensor_from;

namespace {

// Row 1 holds [1000, 0, -1000]: a naive exp() overflows there; the stable form must stay finite.
Tensor golden_logits(const Shape& s) {
  return tensor_from(s, {1.0f, 2.0f, 3.0f, 1000.0f, 0.0f, -1000.0f, 0.5f, -0.5f, 0.1f, 0.0f, 0.0f, 0.0f});
}
const std::vector<int32_t> kLabels = {2, 1, 0, 1};

}  // namespace

TEST_CASE("softmax cross-entropy: mean loss and gradient match torch.nn.functional.cross_entropy") {
  // loss = torch.nn.functional.cross_entropy(logits, labels) (mean reduction) and logits.grad after
  // loss.backward(), torch 1.13, float32.
  const std::vector<float> torch_grad = {0.0225076452f, 0.0611821227f, -0.0836897492f, 0.25f,
                                         -0.25f,        0.0f,          -0.127342716f,  0.0451230928f,
                                         0.0822196379f, 0.0833333284f, -0.166666672f,  0.0833333284f};
  const std::vector<float> torch_softmax = {0.0900305733f, 0.244728476f, 0.665240943f, 1.0f,
                                            0.0f,          0.0f,         0.490629137f, 0.180492371f,
                                            0.328878552f,  0.333333343f, 0.333333343f, 0.333333343f};
  // (N, K) and the (N, K, 1, 1) a final 1x1 convolution or global pooling produces.
  for (const Shape& s : {Shape{4, 3}, Shape{4, 3, 1, 1}}) {
    CAPTURE(s.str());
    const Tensor logits = golden_logits(s);
    Tensor d(Shape{2}, 5.0f);
    const double loss = softmax_cross_entropy(logits, kLabels, &d);
    CHECK(std::isfinite(loss));
    CHECK(loss == doctest::Approx(250.55458068847656).epsilon(1e-7));
    // By hand: (lse([1,2,3]) - 3 + 1000 + lse([.5,-.5,.1]) - .5 + log 3) / 4.
    const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
    const double lse2 = std::log(std::exp(0.5) + std::exp(-0.5) + std::exp(static_cast<double>(0.1f)));
    CHECK(loss == doctest::Approx((lse0 - 3.0 + 1000.0 + lse2 - 0.5 + std::log(3.0)) / 4.0).epsilon(1e-9));
    REQUIRE(d.shape() == s);
    for (int64_t i = 0; i < 12; ++i) {
      CHECK(std::isfinite(d[i]));
      CHECK(d[i] == doctest::Approx(torch_grad[static_cast<size_t>(i)]).epsilon(1e-6).scale(1e-3));
    }
    Tensor p;
    softmax(logits, p);
    REQUIRE(p.shape() == s);
    for (int64_t i = 0; i < 12; ++i)
      CHECK(p[i] == doctest::Approx(torch_softmax[static_cast<size_t>(i)]).epsilon(1e-6).scale(1e-3));
    // Without a gradient tensor the loss is the same.
    CHECK(softmax_cross_entropy(logits, kLabels, nullptr) == loss);
  }
}

TEST_CASE("softmax cross-entropy: the gradient matches central differences of the mean loss") {
  Tensor logits = random_tensor(Shape{5, 7}, 81, -3.0f, 3.0f);
  const std::vector<int32_t> labels = {0, 6, 3, 3, 1};
  Tensor d;
  softmax_cross_entropy(logits, labels, &d);
  const float h = 1e-2f;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    const float saved = logits[i];
    logits[i] = saved + h;
    const double lp = softmax_cross_entropy(logits, labels, nullptr);
    logits[i] = saved - h;
    const double lm = softmax_cross_entropy(logits, labels, nullptr);
    logits[i] = saved;
    const double numeric = (lp - lm) / (static_cast<double>(saved + h) - static_cast<double>(saved - h));
    CHECK(d[i] == doctest::Approx(numeric).epsilon(1e-3).scale(1e-2));
  }
  // Each row of the gradient sums to 0 (softmax sums to 1, one-hot sums to 1).
  for (int64_t n = 0; n < 5; ++n) {
    double s = 0;
    for (int64_t k = 0; k < 7; ++k) s += d[n * 7 + k];
    CHECK(std::abs(s) < 1e-7);
  }
}

TEST_CASE("softmax cross-entropy: bad labels and shapes throw, naming the sample and the label") {
  const Tensor logits = golden_logits(Shape{4, 3});
  const std::vector<int32_t> bad = {2, 1, 3, 0};
  Tensor d;
  try {
    softmax_cross_entropy(logits, bad, &d);
    FAIL("no throw");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "softmax_cross_entropy: label of sample 2 is 3, outside [0, 3)");
  }
  const std::vector<int32_t> negative = {2, -1, 0, 0};
  CHECK_THROWS_AS(softmax_cross_entropy(logits, negative, nullptr), ConfigError);
  const std::vector<int32_t> short_labels = {2, 1, 0};
  CHECK_THROWS_AS(softmax_cross_entropy(logits, short_labels, nullptr), ShapeError);
  CHECK_THROWS_AS(softmax_cross_entropy(Tensor(Shape{4, 3, 2, 1}), kLabels, nullptr), ShapeError);
  CHECK_THROWS_AS(softmax_cross_entropy(Tensor(Shape{12}), kLabels, nullptr), ShapeError);
}

TEST_CASE("count_correct: argmax against labels, the first maximum wins ties") {
  // Row argmaxes: 2, 0, 0, 0 (row 3 is a three-way tie: the first wins).
  const Tensor logits = golden_logits(Shape{4, 3});
  CHECK(count_correct(logits, std::vector<int32_t>{2, 0, 0, 0}) == 4);
  CHECK(count_correct(logits, kLabels) == 2);  // rows 0 and 2
  CHECK(count_correct(logits, std::vector<int32_t>{2, 0, 0, 1}) == 3);
  CHECK(count_correct(logits, std::vector<int32_t>{0, 1, 1, 2}) == 0);
  CHECK(count_correct(golden_logits(Shape{4, 3, 1, 1}), kLabels) == 2);
  CHECK_THROWS_AS(count_correct(logits, std::vector<int32_t>{1, 2}), ShapeError);
}
