// The vector kernels (framework/core/kernels/) on every path this CPU runs: products against a scalar FMA chain
// written out here (the contract: one std::fma chain per output, reduction index ascending, started from the
// initial value), so a path that reorders a sum or skips an FMA fails bit for bit; and against a double
// reference, so a wrong index fails by a lot. Odd shapes exercise partial register tiles, masked vector tails
// and more than one reduction block.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "framework/core/bf16.hpp"
#include "framework/core/cpu.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/gemm.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/rng.hpp"
#include "tests/isa_guard.hpp"

using namespace stride;
using kernels::KernelTable;
using kernels::Start;
using test::IsaGuard;

namespace {

std::vector<float> random_vector(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  RandomStream rng(seed, 97u, 0, 0);
  for (size_t i = 0; i < n; ++i) v[i] = rng.uniform(i, -1.0f, 1.0f);
  return v;
}

std::vector<const KernelTable*> tables() {
  std::vector<const KernelTable*> out;
  for (Isa isa : {Isa::avx512bf16, Isa::avx512, Isa::avx2, Isa::generic})
    if (const KernelTable* t = kernels::kernel_table(isa)) out.push_back(t);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("kernels: the paths this CPU runs, and the FMA probe") {
  CHECK(isa_supported(Isa::generic));
  CHECK(kernels::kernel_table(best_supported_isa()) != nullptr);
  CHECK(isa_supported(active_isa()));
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    CHECK(t->fma_probe(1000) > 0.0);
  }
  CHECK(fma_peak_gflops(Isa::generic) > 0.0);
  CHECK_THROWS_AS(parse_isa("sse9", "STRIDE_ISA"), ConfigError);
  CHECK(parse_isa("avx2", "x") == Isa::avx2);
}

TEST_CASE("kernels: rows_gemm is one FMA chain per output on every path, for odd shapes and every start") {
  struct Case {
    int64_t M, N, K;
  };
  // Shapes around the tiles (12 x 32, 6 x 16, 4 x 4), the vector widths and the 256-deep reduction block.
  const std::vector<Case> cases = {{1, 1, 1},   {3, 5, 7},    {12, 32, 64}, {13, 33, 257},
                                   {32, 17, 75}, {7, 100, 600}, {25, 8, 3},   {64, 64, 0}};
  for (const Case& cs : cases) {
    for (Start start : {Start::zero, Start::row_bias, Start::col_bias, Start::accumulate}) {
      CAPTURE(cs.M);
      CAPTURE(cs.N);
      CAPTURE(cs.K);
      CAPTURE(static_cast<int>(start));
      const int64_t ldb = cs.N + 3, ldc = cs.N + 5;
      const auto a = random_vector(static_cast<size_t>(cs.M * cs.K), 1);
      const auto b = random_vector(static_cast<size_t>(std::max<int64_t>(cs.K, 1) * ldb), 2);
      const auto bias = random_vector(static_cast<size_t>(std::max(cs.M, cs.N)), 3);
      const auto c0 = random_vector(static_cast<size_t>(cs.M * ldc), 4);
      // The contract, written out.
      std::vector<float> expect = c0;
      double worst = 0;
      for (int64_t m = 0; m < cs.M; ++m)
        for (int64_t j = 0; j < cs.N; ++j) {
          float acc = start == Start::zero ? 0.0f
                      : start == Start::row_bias ? bias[static_cast<size_t>(m)]
                      : start == Start::col_bias ? bias[static_cast<size_t>(j)]
                                                 : c0[static_cast<size_t>(m * ldc + j)];
          double ref = acc;
          for (int64_t k = 0; k < cs.K; ++k) {
            acc = std::fma(a[static_cast<size_t>(m * cs.K + k)], b[static_cast<size_t>(k * ldb + j)], acc);
            ref += static_cast<double>(a[static_cast<size_t>(m * cs.K + k)]) * b[static_cast<size_t>(k * ldb + j)];
          }
          expect[static_cast<size_t>(m * ldc + j)] = acc;
          worst = std::max(worst, std::abs(acc - ref));
        }
      CHECK(worst < 1e-4 * (1 + cs.K));
      for (const KernelTable* t : tables()) {
        CAPTURE(isa_name(t->isa));
        std::vector<float> packed(static_cast<size_t>(cs.M * cs.K) + 1);
        t->pack_a(a.data(), cs.K, 1, cs.M, cs.K, packed.data());
        // The same pack in pieces (panels, uneven column blocks; what Conv2d spreads over threads): the same bytes.
        std::vector<float> pieces(packed.size(), -1.0f);
        pieces.back() = packed.back();
        for (int64_t p = 0; p < t->a_panels(cs.M); ++p)
          for (int64_t k0 = 0; k0 < cs.K; k0 += 7) t->pack_a_part(a.data(), cs.K, 1, cs.M, cs.K, p, k0, std::min(cs.K, k0 + 7), pieces.data());
        CHECK(std::memcmp(pieces.data(), packed.data(), static_cast<size_t>(cs.M * cs.K) * sizeof(float)) == 0);
        std::vector<float> c = c0;
        kernels::RowsGemm g;
        g.M = cs.M;
        g.N = cs.N;
        g.K = cs.K;
        g.a_packed = packed.data();
        g.b = b.data();
        g.ldb = ldb;
        g.c = c.data();
        g.ldc = ldc;
        g.init = start;
        g.bias = bias.data();
        t->rows_gemm(g);
        CHECK(same_bits(c, expect));
        // The same product with B rows addressed through an offset table (the convolution form).
        std::vector<int64_t> boff(static_cast<size_t>(cs.K));
        for (int64_t k = 0; k < cs.K; ++k) boff[static_cast<size_t>(k)] = k * ldb;
        std::vector<float> c2 = c0;
        g.boff = boff.data();
        g.ldb = 0;
        g.c = c2.data();
        t->rows_gemm(g);
        CHECK(same_bits(c2, expect));
      }
    }
  }
}

TEST_CASE("kernels: a LiveRows plan skips only B's +0 rows, every other FMA chain step unchanged, on every path") {
  // B's row k is +0 outside its live columns (the zero border of a shifted source): the product with the plan
  // must equal the full FMA chain (the skipped steps add a * (+0) to nonzero sums), and the plan must skip.
  // N = 100 spans several column blocks and a tail, K = 600 three reduction blocks; ranges of every kind
  // (empty, one column, the whole row, crossing a block edge).
  const int64_t M = 13, N = 100, K = 600, ldb = N + 3, ldc = N + 5;
  std::vector<int32_t> begin(K), end(K);
  for (int64_t k = 0; k < K; ++k) {
    const auto b0 = static_cast<int32_t>((k * 37) % N);
    const int32_t len = k % 11 == 0 ? 0 : k % 7 == 0 ? static_cast<int32_t>(N) : static_cast<int32_t>((k * 13) % 40 + 1);
    begin[static_cast<size_t>(k)] = k % 7 == 0 ? 0 : b0;
    end[static_cast<size_t>(k)] = std::min<int32_t>(static_cast<int32_t>(N), begin[static_cast<size_t>(k)] + len);
  }
  const auto a = random_vector(static_cast<size_t>(M * K), 21);
  std::vector<int64_t> boff(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) boff[static_cast<size_t>(k)] = ((k * 7) % K) * ldb;  // rows out of order in memory
  auto b = random_vector(static_cast<size_t>(K * ldb), 22);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < ldb; ++j)
      if (j < begin[static_cast<size_t>(k)] || j >= end[static_cast<size_t>(k)])
        b[static_cast<size_t>(boff[static_cast<size_t>(k)] + j)] = 0.0f;
  const auto c0 = random_vector(static_cast<size_t>(M * ldc), 23);
  std::vector<float> expect = c0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < N; ++j) {
      float acc = c0[static_cast<size_t>(m * ldc + j)];
      for (int64_t k = 0; k < K; ++k)
        acc = std::fma(a[static_cast<size_t>(m * K + k)], b[static_cast<size_t>(boff[static_cast<size_t>(k)] + j)], acc);
      expect[static_cast<size_t>(m * ldc + j)] = acc;
    }
  // bf16: the same B rows read as pairs (row k's live pairs are its live columns) and A as pairs.
  std::vector<uint32_t> b2(b.size());
  for (size_t i = 0; i < b.size(); ++i) b2[i] = b[i] == 0.0f ? 0u : bf16_pair(b[i], -0.5f * b[i]);
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    kernels::LiveRows plan;
    t->plan_live_rows(begin.data(), end.data(), N, K, plan);
    const size_t dense = (plan.start.size() - 1) / 3 * static_cast<size_t>(K);  // (column blocks x 3) blocks
    CHECK(plan.rows.size() < dense * 3 / 4);  // it skips rows (about half of them here)
    std::vector<float> packed(static_cast<size_t>(M * K) + 1);
    t->pack_a(a.data(), K, 1, M, K, packed.data());
    const auto a2 = random_vector(static_cast<size_t>(M * 2 * K), 24);  // bf16: K pairs per row
    std::vector<const float*> rows(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) rows[static_cast<size_t>(m)] = a2.data() + m * 2 * K;
    std::vector<uint32_t> packed2(static_cast<size_t>(M * K) + 1);
    t->pack_a_bf16(rows.data(), 1, M, 2 * K, packed2.data());
    for (Start start : {Start::zero, Start::accumulate}) {
      CAPTURE(static_cast<int>(start));
      // C from the product g (RowsGemm or RowsGemmBf16) run with the given plan.
      auto product = [&](auto g, const kernels::LiveRows* live) {
        std::vector<float> c = c0;
        g.M = M;
        g.N = N;
        g.K = K;
        g.boff = boff.data();
        g.ldc = ldc;
        g.init = start;
        g.c = c.data();
        g.live = live;
        if constexpr (std::is_same_v<decltype(g), kernels::RowsGemm>)
          t->rows_gemm(g);
        else
          t->rows_gemm_bf16(g);
        return c;
      };
      kernels::RowsGemm g;
      g.a_packed = packed.data();
      g.b = b.data();
      const std::vector<float> full = product(g, nullptr), skipped = product(g, &plan);
      if (start == Start::accumulate) CHECK(same_bits(skipped, expect));
      CHECK(same_bits(skipped, full));
      // bf16 pairs: with and without the plan, the same bits.
      kernels::RowsGemmBf16 h;
      h.a_packed = packed2.data();
      h.b = b2.data();
      CHECK(same_bits(product(h, &plan), product(h, nullptr)));
      // A plan for another shape is not used (the full product, the same bits).
      kernels::LiveRows other;
      t->plan_live_rows(begin.data(), end.data(), N - 1, K, other);
      CHECK(same_bits(product(g, &other), full));
    }
  }
}

TEST_CASE("kernels: gemm with transposed operands matches the FMA chain on every path") {
  IsaGuard guard;
  const int64_t M = 19, N = 37, K = 300;
  const auto a = random_vector(static_cast<size_t>(M * K), 5);
  const auto b = random_vector(static_cast<size_t>(K * N), 6);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      // op(A)(m, k) = ta ? A[k * M + m] : A[m * K + k]; op(B)(k, j) = tb ? B[j * K + k] : B[k * N + j].
      std::vector<float> expect(static_cast<size_t>(M * N));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t j = 0; j < N; ++j) {
          float acc = 0.0f;
          for (int64_t k = 0; k < K; ++k)
            acc = std::fma(a[static_cast<size_t>(ta ? k * M + m : m * K + k)],
                           b[static_cast<size_t>(tb ? j * K + k : k * N + j)], acc);
          expect[static_cast<size_t>(m * N + j)] = acc;
        }
      for (const KernelTable* t : tables()) {
        CAPTURE(isa_name(t->isa));
        set_isa(t->isa);
        std::vector<float> c(static_cast<size_t>(M * N), 7.0f);
        gemm(ta, tb, M, N, K, a.data(), ta ? M : K, b.data(), tb ? K : N, c.data(), N);
        CHECK(same_bits(c, expect));
      }
    }
}

TEST_CASE("kernels: wgrad_gemm is one FMA chain per weight over the pixels, on every path") {
  for (int64_t cols : {1, 10, 16, 20, 32, 50, 64}) {
    for (int64_t rows : {1, 7, 13, 76}) {
      CAPTURE(cols);
      CAPTURE(rows);
      const int64_t npix = 37, ldt = kernels::wgrad_ldt(cols), ldc = cols + 2;
      const auto src = random_vector(static_cast<size_t>(rows * 50), 8);
      std::vector<const float*> ptrs;
      for (int64_t r = 0; r < rows; ++r) ptrs.push_back(src.data() + r * 50 + (r % 5));
      auto dyt = random_vector(static_cast<size_t>(npix * ldt), 9);
      for (int64_t j = 0; j < npix; ++j)
        for (int64_t c = cols; c < ldt; ++c) dyt[static_cast<size_t>(j * ldt + c)] = 0.0f;
      const auto c0 = random_vector(static_cast<size_t>(rows * ldc), 10);
      for (Start start : {Start::zero, Start::accumulate}) {
        std::vector<float> expect = c0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            float acc = start == Start::zero ? 0.0f : c0[static_cast<size_t>(r * ldc + c)];
            for (int64_t j = 0; j < npix; ++j) acc = std::fma(ptrs[static_cast<size_t>(r)][j], dyt[static_cast<size_t>(j * ldt + c)], acc);
            expect[static_cast<size_t>(r * ldc + c)] = acc;
          }
        for (const KernelTable* t : tables()) {
          CAPTURE(isa_name(t->isa));
          std::vector<float> c = c0;
          kernels::WgradGemm g;
          g.rows = rows;
          g.cols = cols;
          g.npix = npix;
          g.row_ptrs = ptrs.data();
          g.dyt = dyt.data();
          g.ldt = ldt;
          g.c = c.data();
          g.ldc = ldc;
          g.init = start;
          t->wgrad_gemm(g);
          CHECK(same_bits(c, expect));
        }
      }
    }
  }
}

TEST_CASE("kernels: shifted source, im2col and transpose copy exactly what their definitions say") {
  const int64_t C = 3, Hs = 7, Ws = 21;
  const auto src = random_vector(static_cast<size_t>(C * Hs * Ws), 11);
  auto at = [&](int64_t c, int64_t h, int64_t w) {
    return h >= 0 && h < Hs && w >= 0 && w < Ws ? src[static_cast<size_t>((c * Hs + h) * Ws + w)] : 0.0f;
  };
  for (int64_t sw : {1, 2}) {
    for (int64_t left : {-2, 0, 3}) {
      CAPTURE(sw);
      CAPTURE(left);
      kernels::ShiftedSource s;
      s.src = src.data();
      s.C = C;
      s.Hs = Hs;
      s.Ws = Ws;
      s.S = 3;
      s.dw = 2;
      s.sw = sw;
      s.top = 2;
      s.left = left;
      s.rows = 11;
      s.Q = 19;
      std::vector<float> expect(static_cast<size_t>(C * s.S * s.rows * s.Q));
      for (int64_t c = 0; c < C; ++c)
        for (int64_t si = 0; si < s.S; ++si)
          for (int64_t i = 0; i < s.rows; ++i)
            for (int64_t q = 0; q < s.Q; ++q)
              expect[static_cast<size_t>(((c * s.S + si) * s.rows + i) * s.Q + q)] =
                  at(c, i - s.top, q * sw + si * s.dw - s.left);
      kernels::Im2col m;
      m.src = src.data();
      m.C = C;
      m.Hs = Hs;
      m.Ws = Ws;
      m.R = 2;
      m.S = 3;
      m.dh = 2;
      m.dw = 1;
      m.sh = 2;
      m.sw = sw;
      m.top = 1;
      m.left = left;
      m.P = 4;
      m.Q = 17;
      std::vector<float> expect_col(static_cast<size_t>(C * m.R * m.S * m.P * m.Q));
      for (int64_t c = 0; c < C; ++c)
        for (int64_t r = 0; r < m.R; ++r)
          for (int64_t si = 0; si < m.S; ++si)
            for (int64_t p = 0; p < m.P; ++p)
              for (int64_t q = 0; q < m.Q; ++q)
                expect_col[static_cast<size_t>((((c * m.R + r) * m.S + si) * m.P + p) * m.Q + q)] =
                    at(c, p * m.sh + r * m.dh - m.top, q * sw + si * m.dw - m.left);
      for (const KernelTable* t : tables()) {
        CAPTURE(isa_name(t->isa));
        std::vector<float> out(expect.size(), 9.0f), col(expect_col.size(), 9.0f);
        s.out = out.data();
        t->shifted_source(s);
        CHECK(same_bits(out, expect));
        m.out = col.data();
        t->im2col(m);
        CHECK(same_bits(col, expect_col));
      }
    }
  }
  // K rows of J values (row stride 40) into J rows of K values padded with zeros to ldt; its own source, as
  // large as the K x 40 rows read (ASan caught the test reading past the image above).
  const int64_t K = 21, J = 35, lds = 40, ldt = 32;
  const auto rows = random_vector(static_cast<size_t>(K * lds), 12);
  for (const KernelTable* t : tables()) {
    std::vector<float> out(static_cast<size_t>(J * ldt), 9.0f);
    t->transpose(rows.data(), lds, K, J, out.data(), ldt);
    bool ok = true;
    for (int64_t j = 0; j < J; ++j)
      for (int64_t k = 0; k < ldt; ++k)
        ok = ok && out[static_cast<size_t>(j * ldt + k)] == (k < K ? rows[static_cast<size_t>(k * lds + j)] : 0.0f);
    CHECK(ok);
  }
}

TEST_CASE("kernels: transpose_rows copies rows from anywhere, zero-padded, on every path") {
  // 16 + 3 rows (whole 8 x 8 blocks and a scalar tail) of 35 values (4 blocks and 3 more), each at its own
  // place in a buffer, in a scrambled order.
  const int64_t K = 19, J = 35, ldt = 32;
  const auto buf = random_vector(static_cast<size_t>(K * 50), 13);
  std::vector<const float*> rows;
  for (int64_t k = 0; k < K; ++k) rows.push_back(buf.data() + (k * 7 % K) * 50 + k % 5);
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    for (int64_t k_used : {int64_t{16}, K}) {
      std::vector<float> out(static_cast<size_t>(J * ldt), 9.0f);
      t->transpose_rows(rows.data(), k_used, J, out.data(), ldt);
      bool ok = true;
      for (int64_t j = 0; j < J; ++j)
        for (int64_t k = 0; k < ldt; ++k)
          ok = ok && out[static_cast<size_t>(j * ldt + k)] == (k < k_used ? rows[static_cast<size_t>(k)][j] : 0.0f);
      CHECK(ok);
    }
  }
}

TEST_CASE("kernels: col2im_add adds every column back where im2col read it, in the same order on every path") {
  // Stride 2 with dw = 1 runs kernel columns in pairs (S = 2, 3 and 5: pairs, a pair and a single, ...).
  for (int64_t sw : {1, 2, 3})
    for (int64_t dw : {1, 2})
      for (int64_t S : {1, 2, 3, 5}) {
        CAPTURE(sw);
        CAPTURE(dw);
        CAPTURE(S);
        kernels::Im2col g;
        g.C = 2;
        g.R = 3;
        g.S = S;
        g.dh = 1;
        g.dw = dw;
        g.sh = 2;
        g.sw = sw;
        g.P = 5;
        g.Q = 21;
        g.Hs = (g.P - 1) * g.sh + (g.R - 1) * g.dh + 1;
        g.Ws = (g.Q - 1) * sw + (g.S - 1) * g.dw + 1;
        const auto col = random_vector(static_cast<size_t>(g.C * g.R * g.S * g.P * g.Q), 12);
        const auto base = random_vector(static_cast<size_t>(g.C * g.Hs * g.Ws), 13);
        std::vector<float> expect = base;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t r = 0; r < g.R; ++r)
            for (int64_t s = 0; s < g.S; ++s)
              for (int64_t p = 0; p < g.P; ++p)
                for (int64_t q = 0; q < g.Q; ++q)
                  expect[static_cast<size_t>((c * g.Hs + p * g.sh + r * g.dh) * g.Ws + q * sw + s * g.dw)] +=
                      col[static_cast<size_t>((((c * g.R + r) * g.S + s) * g.P + p) * g.Q + q)];
        for (const KernelTable* t : tables()) {
          CAPTURE(isa_name(t->isa));
          std::vector<float> out = base;
          t->col2im_add(g, col.data(), out.data());
          CHECK(same_bits(out, expect));
        }
      }
}

TEST_CASE("kernels: the exact sum's conversions round to the nearest int64, ties to even, as llrint, on every path") {
  // Values of every magnitude the exact sum feeds in (|x * factor| < 2^62): ties at .5 of both parities,
  // subnormal floats, the largest float below the limit, and random mantissas at 2^-20 .. 2^61; 37 values so
  // every path has a vector tail.
  const double factor = std::ldexp(1.0, 40);
  std::vector<float> x = {0.5f * 0x1p-40f,   1.5f * 0x1p-40f,  -2.5f * 0x1p-40f, 3.5f * 0x1p-40f,
                          -0.5f * 0x1p-40f,  0.0f,             -0.0f,            1e-45f,
                          -1e-45f,           0x1.fffffep21f,   -0x1.fffffep21f,  0x1.000002p21f,
                          0x1p20f + 0.5f,    0x1.7p-30f,       -0x1.7p-30f};
  const std::vector<float> r = random_vector(22, 5);
  for (size_t i = 0; i < r.size(); ++i) x.push_back(std::ldexp(r[i], static_cast<int>(i % 22) - 20 - 40 + 41));
  std::vector<int64_t> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    REQUIRE(std::fabs(static_cast<double>(x[i]) * factor) < std::ldexp(1.0, 62));
    expected[i] = std::llrint(static_cast<double>(x[i]) * factor);
  }
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    std::vector<int64_t> out(x.size(), 7);
    const float* one[] = {x.data()};
    t->to_fixed(one, 1, 0, static_cast<int64_t>(x.size()), factor, out.data());
    CHECK(out == expected);
    // Two sources: x's largest values are near 2^62, so two of them are as many as an int64 holds.
    const float* two_sources[] = {x.data(), x.data()};
    t->to_fixed(two_sources, 2, 0, static_cast<int64_t>(x.size()), factor, out.data());
    for (size_t i = 0; i < x.size(); ++i) CHECK(out[i] == 2 * expected[i]);
    t->to_fixed(nullptr, 0, 0, static_cast<int64_t>(x.size()), factor, out.data());
    CHECK(out == std::vector<int64_t>(x.size(), 0));
    // Longer than the kernel's window of 256 sums, three different sources, from element 5 on.
    const std::vector<float> a = random_vector(605, 7), b = random_vector(605, 8), c = random_vector(605, 9);
    std::vector<int64_t> long_out(600, 7);
    const float* abc[] = {a.data(), b.data(), c.data()};
    t->to_fixed(abc, 3, 5, 600, factor, long_out.data());
    int64_t wrong = 0;
    for (size_t i = 0; i < 600; ++i)
      wrong += long_out[i] !=
               std::llrint(a[i + 5] * factor) + std::llrint(b[i + 5] * factor) + std::llrint(c[i + 5] * factor);
    CHECK(wrong == 0);

    // The largest magnitude as float bits: found anywhere in the run, and NaN or infinity above every number.
    std::vector<float> y = random_vector(37, 6);
    y[29] = -3.0f;
    uint32_t three;
    const float f3 = 3.0f;
    std::memcpy(&three, &f3, sizeof three);
    CHECK(t->max_abs_bits(y.data(), 37) == three);
    CHECK(t->max_abs_bits(y.data(), 0) == 0u);
    y[36] = -INFINITY;
    CHECK(t->max_abs_bits(y.data(), 37) == 0x7f800000u);
    y[3] = NAN;
    CHECK(t->max_abs_bits(y.data(), 37) > 0x7f800000u);
  }
}
