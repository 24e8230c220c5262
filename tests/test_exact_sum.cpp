// The exact gradient sum (framework/exact_sum): the same bits however the micro-batches are grouped into
// processes and whatever the bucket size, within the documented precision of the true sum, NaN-safe.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "framework/exact_sum.hpp"

using namespace stride;

namespace {

// Three "parameters" of different scales: the second ~1e-4 of the first, the third with exact zeros.
const std::vector<SumSegment> kParams = {{0, 1000}, {1000, 1013}, {1013, 1500}};
constexpr int64_t kSize = 1500;

std::vector<std::vector<float>> micro_batch_gradients(int64_t m, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> g(static_cast<size_t>(m), std::vector<float>(kSize));
  for (auto& v : g)
    for (int64_t i = 0; i < kSize; ++i) {
      const float scale = i < 1000 ? 1.0f : i < 1013 ? 1e-4f : (i % 3 == 0 ? 0.0f : 3e3f);
      v[static_cast<size_t>(i)] = normal(gen) * scale * std::ldexp(1.0f, static_cast<int>(gen() % 9) - 4);
    }
  return g;
}

// The step's sum with the micro-batches spread over processes as `groups` says (counts per process, in
// order), exchanging exponents by max and fixed-point sums by integer addition, as MPI would.
// With `clear`, the kept micro-batches go through keep_and_clear() on copies, which must be left all +0.0.
std::vector<float> sum_in_groups(const std::vector<std::vector<float>>& g, const std::vector<int64_t>& groups,
                                 int64_t bucket_elements, bool clear = false) {
  const auto m = static_cast<int64_t>(g.size());
  std::vector<ExactSum> procs;
  std::vector<std::vector<float>> live(groups.size(), std::vector<float>(kSize, 0.0f));
  int64_t next = 0;
  for (size_t p = 0; p < groups.size(); ++p) {
    procs.emplace_back(kParams, kSize, bucket_elements);
    procs[p].begin_step(m, groups[p]);
    for (int64_t k = 0; k < groups[p]; ++k, ++next) {
      if (k + 1 < groups[p] && clear) {
        std::vector<float> copy = g[static_cast<size_t>(next)];
        procs[p].keep_and_clear(copy);
        const std::vector<float> zeros(copy.size(), 0.0f);
        CHECK(std::memcmp(copy.data(), zeros.data(), zeros.size() * sizeof(float)) == 0);
      } else if (k + 1 < groups[p]) {
        procs[p].keep(g[static_cast<size_t>(next)]);
      } else {
        live[p] = g[static_cast<size_t>(next)];
      }
    }
    if (groups[p] > 0) procs[p].set_live(live[p]);
  }
  REQUIRE(next == m);
  std::vector<float> out(kSize, -1.0f);
  const ExactSum& first = procs[0];
  for (size_t b = 0; b < first.buckets().size(); ++b) {
    const size_t segs = first.buckets()[b].segments.size();
    std::vector<int32_t> agreed(segs, ExactSum::kAllZero), mine(segs);
    for (auto& p : procs) {
      p.exponents(b, mine.data(), /*parallel=*/b % 2 == 0);
      for (size_t s = 0; s < segs; ++s) agreed[s] = std::max(agreed[s], mine[s]);
    }
    std::vector<int64_t> total(static_cast<size_t>(first.buckets()[b].size()), 0), part(total.size());
    for (auto& p : procs) {
      p.to_fixed(b, agreed.data(), part.data(), /*parallel=*/false);
      for (size_t i = 0; i < total.size(); ++i) total[i] += part[i];
    }
    first.from_fixed(b, agreed.data(), total.data(), out, /*parallel=*/b % 2 == 1);
  }
  return out;
}

}  // namespace

TEST_CASE("exact sum: buckets follow backward's order and hold whole parameters") {
  const ExactSum sum(kParams, kSize, 600);
  const auto& b = sum.buckets();
  REQUIRE(b.size() == 2);
  CHECK(b[0].begin == 1000);  // the last two parameters first (backward finishes them first)
  CHECK(b[0].end == 1500);
  CHECK(b[0].segments.size() == 2);
  CHECK(b[1].begin == 0);
  CHECK(b[1].end == 1000);  // larger than 600: alone in its bucket
  CHECK(sum.bucket_of(1499) == 0);
  CHECK(sum.bucket_of(1000) == 0);
  CHECK(sum.bucket_of(999) == 1);
  CHECK(sum.bucket_of(0) == 1);
  CHECK(ExactSum(kParams, kSize, 1).buckets().size() == 3);
  CHECK(ExactSum(kParams, kSize, 1 << 20).buckets().size() == 1);
}

TEST_CASE("exact sum: the same bits for any grouping of the micro-batches and any bucket size") {
  for (int64_t m : {1, 2, 7, 8, 24}) {
    CAPTURE(m);
    const auto g = micro_batch_gradients(m, static_cast<uint32_t>(m));
    const std::vector<float> one = sum_in_groups(g, {m}, 1 << 20);
    std::vector<std::vector<int64_t>> groupings = {{m}};
    if (m >= 2) groupings.push_back({m / 2, m - m / 2});
    if (m >= 4) groupings.push_back({1, m - 3, 1, 1});
    groupings.push_back({0, m, 0});  // processes without micro-batches add nothing
    for (const auto& groups : groupings)
      for (int64_t bucket : {1, 300, 1 << 20}) {
        const std::vector<float> other = sum_in_groups(g, groups, bucket);
        CHECK(std::memcmp(other.data(), one.data(), one.size() * sizeof(float)) == 0);
        // keep_and_clear (the training step's) keeps the same values as keep.
        const std::vector<float> cleared = sum_in_groups(g, groups, bucket, /*clear=*/true);
        CHECK(std::memcmp(cleared.data(), one.data(), one.size() * sizeof(float)) == 0);
      }
    // Against the sum in long double (64-bit mantissa: exact enough here), within the documented bound.
    int c = 0;
    while ((int64_t{1} << c) < m) ++c;
    for (const SumSegment& p : kParams) {
      long double largest = 0;
      for (const auto& v : g)
        for (int64_t i = p.begin; i < p.end; ++i) largest = std::max(largest, std::fabs((long double)v[static_cast<size_t>(i)]));
      for (int64_t i = p.begin; i < p.end; ++i) {
        long double exact = 0;
        for (const auto& v : g) exact += v[static_cast<size_t>(i)];
        const float got = one[static_cast<size_t>(i)];
        const long double bound = largest * std::ldexp(1.0L, -(62 - 2 * c)) +
                                  0.5L * std::fabs(std::nextafter(static_cast<float>(exact), INFINITY) - static_cast<float>(exact));
        REQUIRE(std::fabs((long double)got - exact) <= bound);
      }
    }
  }
}

TEST_CASE("exact sum: values are rounded to the nearest integer, ties to even, like llrint") {
  // One tensor whose largest value is 1 (scale 2^61 for one micro-batch): the others land on ties, on
  // values just off them, and on integers, at both ends of the range.
  const float unit = 0x1p-61f;  // becomes 1
  const std::vector<float> g = {1.0f,          0.5f * unit,       1.5f * unit,        2.5f * unit,
                                -3.5f * unit,  (0x1p20f + 0.5f) * unit, (0x1p20f + 1.5f) * unit,
                                -(0x1p22f + 0.5f) * unit, 0.5000001f * unit, 0x1p-30f, -0.75f, 0x1p-80f};
  ExactSum sum({{0, static_cast<int64_t>(g.size())}}, static_cast<int64_t>(g.size()), 1 << 20);
  sum.begin_step(1, 1);
  sum.set_live(g);
  int32_t e;
  sum.exponents(0, &e, false);
  REQUIRE(e == 1);
  std::vector<int64_t> q(g.size());
  sum.to_fixed(0, &e, q.data(), false);
  for (size_t i = 0; i < g.size(); ++i) {
    CAPTURE(i);
    CHECK(q[i] == std::llrint(std::ldexp(static_cast<double>(g[i]), 61)));
  }
  CHECK(q[1] == 0);
  CHECK(q[2] == 2);
  CHECK(q[3] == 2);
  CHECK(q[4] == -4);
}

TEST_CASE("exact sum: zeros stay zero, and one NaN or infinity makes its tensor NaN everywhere") {
  auto g = micro_batch_gradients(3, 11);
  for (auto& v : g) std::fill(v.begin() + 1000, v.begin() + 1013, 0.0f);
  g[1][5] = std::numeric_limits<float>::infinity();
  const std::vector<float> out = sum_in_groups(g, {1, 2}, 1 << 20);
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(std::isnan(out[static_cast<size_t>(i)]));
  for (int64_t i = 1000; i < 1013; ++i) REQUIRE(out[static_cast<size_t>(i)] == 0.0f);
  for (int64_t i = 1013; i < kSize; ++i) REQUIRE(std::isfinite(out[static_cast<size_t>(i)]));
}
