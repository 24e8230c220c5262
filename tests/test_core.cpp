#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/init.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"
#include "framework/core/tensor.hpp"

using namespace stride;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  auto a = philox4x32(0, {0, 0, 0, 0});
  CHECK(a == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  auto b = philox4x32(0xffffffffffffffffull, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu});
  CHECK(b == std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  auto c = philox4x32(0x299f31d0a4093822ull, {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u});
  CHECK(c == std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("random streams are pure functions of their key and distinct across keys") {
  RandomStream s(42, Purpose::dropout, 3, 17);
  CHECK(s.word(5) == RandomStream(42, Purpose::dropout, 3, 17).word(5));
  CHECK(s.word(5) != RandomStream(43, Purpose::dropout, 3, 17).word(5));
  CHECK(s.word(5) != RandomStream(42, Purpose::dropout, 4, 17).word(5));
  CHECK(s.word(5) != RandomStream(42, Purpose::augment, 3, 17).word(5));
  double sum = 0, sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    float u = s.uniform(static_cast<uint64_t>(i));
    CHECK_UNARY(u >= 0.0f);
    CHECK_UNARY(u < 1.0f);
    float z = s.normal(static_cast<uint64_t>(i));
    sum += z;
    sq += static_cast<double>(z) * z;
  }
  CHECK(std::abs(sum / n) < 0.03);
  CHECK(std::abs(sq / n - 1.0) < 0.05);
  CHECK(layer_purpose("drop1") != layer_purpose("drop2"));
  CHECK(layer_purpose("drop1") >= 0x80000000u);
}

TEST_CASE("tensor storage is 64-byte aligned, zero-filled, and resize keeps capacity") {
  Tensor t(Shape{2, 3, 4, 5});
  CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.numel() == 120);
  for (int64_t i = 0; i < t.numel(); ++i) CHECK(t[i] == 0.0f);
  const float* before = t.data();
  t.resize(Shape{1, 3, 4, 5});
  CHECK(t.data() == before);
  t.resize(Shape{2, 3, 4, 5});
  CHECK(t.data() == before);
  CHECK(Shape({128, 3, 32, 32}).str() == "(N=128, C=3, H=32, W=32)");
  CHECK(Shape({128, 10}).str() == "(N=128, F=10)");
  CHECK(Shape({3, 32, 32}).str() == "(C=3, H=32, W=32)");
  CHECK_THROWS_AS(t.reshape(Shape{7}), ShapeError);
  try {
    check_shape("conv1", "input", Shape{1, 3, 32, 32}, Shape{1, 1, 28, 28});
    FAIL("no throw");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()) == "conv1: expected input (N=1, C=3, H=32, W=32), got (N=1, C=1, H=28, W=28)");
  }
}

TEST_CASE("parallel_chunks covers every index once with fixed boundaries") {
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    std::vector<int> hits(1000, 0);
    std::vector<int64_t> starts(chunk_count(1000, 64), -1);
    parallel_chunks(1000, 64, [&](int64_t c, int64_t b, int64_t e) {
      starts[static_cast<size_t>(c)] = b;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (int h : hits) CHECK(h == 1);
    for (size_t c = 0; c < starts.size(); ++c) CHECK(starts[c] == static_cast<int64_t>(c) * 64);
  }
  CHECK_THROWS_AS(ThreadLimit(0), ConfigError);
}

TEST_CASE("same_or_copy: bit-for-bit comparison, and the copy taken whole when anything differs") {
  // Several of its 16384-float blocks and a partial last one; differences in the first, a middle and the
  // last block, and ones only the bits show (the sign of a zero, a NaN's payload).
  const size_t n = 3 * 16384 + 77;
  std::vector<float> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<float>(i) * 0.25f - 1000.0f;
  run_with_threads(3, [&] {
    std::vector<float> copy;
    CHECK_FALSE(same_or_copy(copy, src.data(), n));  // empty: takes the values
    CHECK(copy == src);
    CHECK(same_or_copy(copy, src.data(), n));
    const float nan_a = std::bit_cast<float>(0x7FC00001u), nan_b = std::bit_cast<float>(0x7FC00002u);
    for (size_t at : {size_t{0}, size_t{16384 + 5}, n - 1}) {
      for (auto [was, now] : {std::pair{1.0f, 2.0f}, std::pair{0.0f, -0.0f}, std::pair{nan_a, nan_b}}) {
        src[at] = was;
        REQUIRE_FALSE(same_or_copy(copy, src.data(), n));
        src[at] = now;
        CHECK_FALSE(same_or_copy(copy, src.data(), n));
        CHECK(std::memcmp(copy.data(), src.data(), n * sizeof(float)) == 0);
        CHECK(same_or_copy(copy, src.data(), n));
      }
    }
    std::vector<float> shorter(src.begin(), src.begin() + 10);
    CHECK_FALSE(same_or_copy(shorter, src.data(), n));  // another size: takes the values
    CHECK(std::memcmp(shorter.data(), src.data(), n * sizeof(float)) == 0);
    std::vector<float> none;
    CHECK(same_or_copy(none, src.data(), 0));
  });
}

TEST_CASE("weight init follows the documented bounds and depends only on (seed, param, element)") {
  ParamSpec spec{"weight", Shape{64, 3, 5, 5}, ParamRole::learnable, Init::pytorch_default, 75, 1600};
  std::vector<float> a(4800), b(4800);
  init_param(a, spec, 1, 0);
  init_param(b, spec, 1, 0);
  CHECK(a == b);
  const float bound = 1.0f / std::sqrt(75.0f);
  float mx = 0;
  for (float v : a) mx = std::max(mx, std::abs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.95f * bound);
  init_param(b, spec, 1, 1);
  CHECK(a != b);
  spec.init = Init::kaiming_normal;
  init_param(a, spec, 1, 0);
  double sq = 0;
  for (float v : a) sq += static_cast<double>(v) * v;
  CHECK(std::sqrt(sq / 4800) == doctest::Approx(std::sqrt(2.0 / 75)).epsilon(0.05));
  spec.init = Init::xavier_uniform;
  init_param(a, spec, 1, 0);
  mx = 0;
  for (float v : a) mx = std::max(mx, std::abs(v));
  CHECK(mx <= std::sqrt(6.0f / (75 + 1600)));
}
