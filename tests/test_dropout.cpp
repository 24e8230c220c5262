#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"
#include "layers/dropout.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::check_gradients;
using stride::test::LayerParams;
using stride::test::random_tensor;

namespace {

// Inputs bounded away from 0, so y == 0 means "dropped".
Tensor nonzero_input(const Shape& s, uint64_t seed) {
  Tensor x = random_tensor(s, seed, 0.5f, 2.0f);
  for (int64_t i = 0; i < x.numel(); i += 2) x[i] = -x[i];
  return x;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<size_t>(a.numel()) * 4) == 0;
}

Tensor run(Dropout& d, const Tensor& x, const RunContext& ctx) {
  Tensor y;
  d.forward(x, y, ctx);
  return y;
}

}  // namespace

TEST_CASE("dropout: eval mode (and p = 0) is the identity, bit for bit, forward and backward") {
  const Tensor x = nonzero_input(Shape{4, 3, 5, 5}, 1);
  const Tensor dy = random_tensor(x.shape(), 2);
  Dropout d("drop1", DropoutOptions{0.5});
  Tensor y, dx(x.shape(), 7.0f);
  d.forward(x, y, RunContext{Mode::eval, 9, 3, 100});
  d.backward(x, y, dy, &dx, RunContext{Mode::eval, 9, 3, 100});
  CHECK(same_bits(x, y));
  CHECK(same_bits(dy, dx));
  Dropout none("drop0", DropoutOptions{0.0});
  CHECK(same_bits(x, run(none, x, RunContext{Mode::train, 9, 3, 100})));
}

TEST_CASE("dropout: train mode keeps x / (1 - p) exactly where the documented Philox draw is >= p") {
  const Tensor x = nonzero_input(Shape{6, 2, 3, 4}, 3);
  const int64_t F = 24;
  // p = 0.5 and 0.75: 1 - p is a power of two, so x / (1 - p) is exact; p = 0.3 follows PyTorch's
  // x * (1 / (1 - p)) with the scale rounded to float.
  for (double p : {0.5, 0.75, 0.3}) {
    CAPTURE(p);
    Dropout d("drop1", DropoutOptions{p});
    const RunContext ctx{Mode::train, 42, 5, 1000};
    const Tensor y = run(d, x, ctx);
    const float pf = static_cast<float>(p);
    const float scale = 1.0f / (1.0f - pf);
    int64_t dropped = 0;
    for (int64_t n = 0; n < 6; ++n) {
      const RandomStream rng(42, layer_purpose("drop1"), 5, static_cast<uint32_t>(1000 + n));
      for (int64_t e = 0; e < F; ++e) {
        const float xv = x[n * F + e], yv = y[n * F + e];
        if (rng.uniform(static_cast<uint64_t>(e)) < pf) {
          CHECK(yv == 0.0f);
          ++dropped;
        } else if (p != 0.3) {
          CHECK(yv == xv / (1.0f - pf));
        } else {
          CHECK(yv == xv * scale);
        }
      }
    }
    CHECK(dropped > 0);
    CHECK(dropped < 6 * F);
    // Backward applies the same mask and scale.
    const Tensor dy = random_tensor(x.shape(), 4);
    Tensor dx;
    d.backward(x, y, dy, &dx, ctx);
    for (int64_t i = 0; i < x.numel(); ++i) CHECK(dx[i] == (y[i] == 0.0f ? 0.0f : dy[i] * scale));
  }
}

TEST_CASE("dropout: the drop rate over 100k elements is within 1% of p") {
  const Tensor x(Shape{100, 10, 10, 10}, 1.0f);
  for (double p : {0.5, 0.25}) {
    CAPTURE(p);
    Dropout d("drop1", DropoutOptions{p});
    const Tensor y = run(d, x, RunContext{Mode::train, 7, 0, 0});
    int64_t dropped = 0;
    for (int64_t i = 0; i < y.numel(); ++i) dropped += y[i] == 0.0f;
    const double rate = static_cast<double>(dropped) / static_cast<double>(y.numel());
    CHECK(std::abs(rate - p) < 0.01 * p);
  }
}

TEST_CASE("dropout: a mask depends only on (seed, epoch, global sample, layer name, element)") {
  const Tensor x = nonzero_input(Shape{2, 64}, 5);
  Dropout d1("drop1", DropoutOptions{0.5});
  Dropout d1_again("drop1", DropoutOptions{0.5});
  Dropout d2("drop2", DropoutOptions{0.5});
  const Tensor base = run(d1, x, RunContext{Mode::train, 11, 2, 40});
  CHECK(same_bits(base, run(d1, x, RunContext{Mode::train, 11, 2, 40})));
  CHECK(same_bits(base, run(d1_again, x, RunContext{Mode::train, 11, 2, 40})));
  CHECK_FALSE(same_bits(base, run(d1, x, RunContext{Mode::train, 11, 3, 40})));  // epoch
  CHECK_FALSE(same_bits(base, run(d1, x, RunContext{Mode::train, 12, 2, 40})));  // seed
  CHECK_FALSE(same_bits(base, run(d1, x, RunContext{Mode::train, 11, 2, 41})));  // sample
  CHECK_FALSE(same_bits(base, run(d2, x, RunContext{Mode::train, 11, 2, 40})));  // layer name
  // Sample 1 of a batch starting at 40 is sample 0 of a batch starting at 41: same dropped positions.
  const Tensor shifted = run(d1, x, RunContext{Mode::train, 11, 2, 41});
  for (int64_t e = 0; e < 64; ++e) CHECK((base[64 + e] == 0.0f) == (shifted[e] == 0.0f));
}

TEST_CASE("dropout: splitting the batch does not change any sample's mask") {
  const Tensor x = nonzero_input(Shape{8, 3, 4, 4}, 6);
  const int64_t F = 48;
  Dropout d("drop1", DropoutOptions{0.4});
  const Tensor whole = run(d, x, RunContext{Mode::train, 3, 1, 0});
  Tensor lo(Shape{4, 3, 4, 4}), hi(Shape{4, 3, 4, 4});
  std::memcpy(lo.data(), x.data(), 4 * F * 4);
  std::memcpy(hi.data(), x.data() + 4 * F, 4 * F * 4);
  const Tensor ylo = run(d, lo, RunContext{Mode::train, 3, 1, 0});
  const Tensor yhi = run(d, hi, RunContext{Mode::train, 3, 1, 4});
  CHECK(std::memcmp(whole.data(), ylo.data(), 4 * F * 4) == 0);
  CHECK(std::memcmp(whole.data() + 4 * F, yhi.data(), 4 * F * 4) == 0);
}

TEST_CASE("dropout: gradients match central differences in train mode; bit-identical for 1, 2, 4 threads") {
  Dropout d("drop1", DropoutOptions{0.5});
  const Tensor x = random_tensor(Shape{3, 2, 3, 3}, 8);
  LayerParams params(d, x.shape());
  check_gradients(d, params, x, RunContext{Mode::train, 5, 1, 17});
  check_gradients(d, params, x, RunContext{Mode::eval, 5, 1, 17});

  const Tensor big = random_tensor(Shape{64, 16, 8, 8}, 9);
  const Tensor dy = random_tensor(big.shape(), 10);
  std::vector<Tensor> ys, dxs;
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    Dropout dd("drop1", DropoutOptions{0.5});
    Tensor y, dx;
    dd.forward(big, y, RunContext{Mode::train, 5, 1, 17});
    dd.backward(big, y, dy, &dx, RunContext{Mode::train, 5, 1, 17});
    ys.push_back(y);
    dxs.push_back(dx);
  }
  for (size_t t = 1; t < ys.size(); ++t) {
    CHECK(same_bits(ys[0], ys[t]));
    CHECK(same_bits(dxs[0], dxs[t]));
  }
}

TEST_CASE("dropout: from_config reads p and rejects values outside [0, 1)") {
  auto d = Dropout::from_config(LayerConfig::parse(R"({"name": "drop1", "type": "dropout", "p": 0.25})"));
  CHECK(d->type() == "dropout");
  CHECK(dynamic_cast<Dropout&>(*d).options().p == 0.25);
  auto dflt = Dropout::from_config(LayerConfig::parse(R"({"name": "drop1", "type": "dropout"})"));
  CHECK(dynamic_cast<Dropout&>(*dflt).options().p == 0.5);
  for (const char* bad : {R"({"name": "drop1", "type": "dropout", "p": 1.0})",
                          R"({"name": "drop1", "type": "dropout", "p": -0.1})"}) {
    try {
      Dropout::from_config(LayerConfig::parse(bad));
      FAIL("no throw");
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("drop1") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(Dropout(std::string("drop1"), DropoutOptions{1.0}), ConfigError);
}
