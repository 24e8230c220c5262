// bf16 conversion and the bf16 kernels on every path this CPU runs (including the vdpbf16ps one where the CPU
// has it): bitwise against the scalar reference of framework/core/bf16.hpp (which follows the Intel SDM's
// per-step rounding of vdpbf16ps), close to an fp64 sum of the bf16-rounded products, on awkward shapes
// (partial register tiles, masked tails, odd pair counts, more than one reduction block) and awkward values
// (denormals, ties, products that underflow or overflow).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "framework/core/bf16.hpp"
#include "framework/core/cpu.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/rng.hpp"

using namespace stride;
using kernels::KernelTable;
using kernels::Start;

namespace {

float bits(uint32_t u) { return std::bit_cast<float>(u); }

std::vector<const KernelTable*> tables() {
  std::vector<const KernelTable*> out;
  for (Isa isa : {Isa::avx512bf16, Isa::avx512, Isa::avx2, Isa::generic})
    if (const KernelTable* t = kernels::kernel_table(isa)) out.push_back(t);
  return out;
}

std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  RandomStream rng(seed, 41u, 0, 0);
  for (size_t i = 0; i < n; ++i) v[i] = rng.uniform(i, lo, hi);
  return v;
}

// Random 32-bit patterns, biased towards what breaks emulations: zeros, denormals (exponent 0), exponents
// near the bottom and the top, ties (low 16 bits 0x8000), infinities and NaNs.
uint32_t awkward_bits(RandomStream& rng, uint64_t i) {
  const uint32_t r = std::bit_cast<uint32_t>(rng.uniform(2 * i, 0.0f, 1.0f)) * 2654435761u ^
                     static_cast<uint32_t>(rng.uniform(2 * i + 1, 0.0f, 1.0f) * 4294967040.0f);
  const uint32_t sign = r & 0x80000000u, mant = r & 0x007fffffu;
  switch (r % 8) {
    case 0: return sign | mant;                                     // denormal or zero
    case 1: return sign | (1u << 23) | mant;                        // smallest exponent
    case 2: return sign | ((60u + (r >> 8) % 10) << 23) | mant;    // products near the denormal range
    case 3: return sign | ((127u + (r >> 8) % 8) << 23) | (mant & 0x7f0000u) | 0x8000u;  // a tie
    case 4: return sign | ((190u + (r >> 8) % 64) << 23) | mant;   // products that overflow
    case 5: return (r >> 8) % 16 == 0 ? (sign | 0x7f800000u | (mant & 0x400000u)) : (sign | (127u << 23) | mant);
    default: return sign | ((110u + (r >> 8) % 30) << 23) | mant;  // ordinary
  }
}

bool same(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

}  // namespace

TEST_CASE("bf16: conversion rounds to nearest even, flushes denormals, keeps NaN quiet (as vcvtneps2bf16)") {
  CHECK(to_bf16(1.0f) == 0x3f80);
  CHECK(to_bf16(-2.0f) == 0xc000);
  CHECK(to_bf16(bits(0x3f808000u)) == 0x3f80);  // tie, even below
  CHECK(to_bf16(bits(0x3f818000u)) == 0x3f82);  // tie, even above
  CHECK(to_bf16(bits(0x3f808001u)) == 0x3f81);  // just above the tie
  CHECK(to_bf16(bits(0x3f807fffu)) == 0x3f80);
  CHECK(to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to infinity
  CHECK(to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(to_bf16(bits(0x00000001u)) == 0x0000);  // denormals: a zero of their sign
  CHECK(to_bf16(bits(0x807fffffu)) == 0x8000);
  CHECK(to_bf16(bits(0x00800000u)) == 0x0080);  // the smallest normal stays
  CHECK(to_bf16(bits(0x7f800001u)) == 0x7fc0);  // signalling NaN made quiet
  CHECK(to_bf16(bits(0xffc12345u)) == 0xffc1);  // quiet NaN keeps sign and top payload bits
  CHECK(round_bf16(3.14159265f) == 3.140625f);  // torch.tensor(3.14159265).bfloat16() == 3.140625
  CHECK(bf16_pair(1.0f, -2.0f) == 0xc0003f80u);
  CHECK(parse_precision("bf16", "x") == Precision::bf16);
  CHECK_THROWS_AS(parse_precision("fp16", "--precision"), ConfigError);
}

TEST_CASE("bf16: the dot-product step follows the SDM's order and flushing") {
  // Odd pair first: with odd product -1 and even product 2^-24, (1 - 1) + 2^-24 = 2^-24; the even pair first
  // would give (1 + 2^-24) - 1 = 0, since 1 + 2^-24 is a tie that rounds to 1.
  const uint32_t a = bf16_pair(0x1p-24f, -1.0f), b = bf16_pair(1.0f, 1.0f);
  CHECK(dpbf16_step(1.0f, a, b) == 0x1p-24f);
  // FTZ after rounding: 2^-126 - 2^-152 rounds to 2^-126 (normal), so it stays.
  CHECK(dpbf16_step(0x1p-126f, bf16_pair(0.0f, 0x1p-76f), bf16_pair(0.0f, -0x1p-76f)) == 0x1p-126f);
  // A denormal result becomes a zero of its sign.
  CHECK(std::bit_cast<uint32_t>(dpbf16_step(-0x1.8p-126f, bf16_pair(0x1p-63f, 0.0f), bf16_pair(0x1p-63f, 0.0f))) ==
        0x80000000u);
  // A denormal accumulator reads as zero.
  CHECK(dpbf16_step(bits(0x00000005u), 0u, 0u) == 0.0f);
  // A denormal bf16 input reads as zero, however large the other factor.
  // (0x0001 is 2^-133, 0x7f00 is 2^127: without DAZ the product would be 2^-6.)
  CHECK(dpbf16_step(1.0f, 0x00000001u, 0x00007f00u) == 1.0f);
}

TEST_CASE("bf16 kernels: pack_pairs, pack_a_bf16 and transpose_pairs equal the scalar conversion") {
  RandomStream rng(5, 3, 0, 0);
  std::vector<float> x(1000), y(1000);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = bits(awkward_bits(rng, i));
    y[i] = bits(awkward_bits(rng, i + 5000));
  }
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    for (int64_t n : {0, 1, 7, 16, 17, 33, 1000}) {
      CAPTURE(n);
      std::vector<uint32_t> out(static_cast<size_t>(n) + 1, 0xdeadbeefu);
      t->pack_pairs(x.data(), y.data(), n, out.data());
      bool ok = out[static_cast<size_t>(n)] == 0xdeadbeefu;  // nothing written past n
      for (int64_t i = 0; i < n; ++i) ok = ok && out[static_cast<size_t>(i)] == bf16_pair(x[static_cast<size_t>(i)], y[static_cast<size_t>(i)]);
      t->pack_pairs(x.data(), nullptr, n, out.data());
      for (int64_t i = 0; i < n; ++i) ok = ok && out[static_cast<size_t>(i)] == bf16_pair(x[static_cast<size_t>(i)], 0.0f);
      CHECK(ok);
    }
    // A (M x K) from row pointers, contiguous (cs = 1, odd K, more than one 256-pair chunk) and strided.
    for (int64_t M : {1, 5, 13, 26}) {
      for (int64_t K : {1, 2, 9, 531}) {
        for (int64_t cs : {1, 3}) {
          CAPTURE(M);
          CAPTURE(K);
          CAPTURE(cs);
          std::vector<float> src(static_cast<size_t>(M * K * cs));
          for (size_t i = 0; i < src.size(); ++i) src[i] = bits(awkward_bits(rng, i + 20000));
          std::vector<const float*> rows(static_cast<size_t>(M));
          for (int64_t m = 0; m < M; ++m) rows[static_cast<size_t>(m)] = src.data() + m * K * cs;
          const int64_t KP = (K + 1) / 2;
          std::vector<uint32_t> packed(static_cast<size_t>(M * KP));
          t->pack_a_bf16(rows.data(), cs, M, K, packed.data());
          // The panel layout is the fp32 pack_a's: pack the expected pairs, as floats, with pack_a and compare bits.
          std::vector<float> want(static_cast<size_t>(M * KP)), want_packed(want.size());
          for (int64_t m = 0; m < M; ++m)
            for (int64_t k = 0; k < KP; ++k) {
              const float* r = rows[static_cast<size_t>(m)];
              want[static_cast<size_t>(m * KP + k)] =
                  bits(bf16_pair(r[2 * k * cs], 2 * k + 1 < K ? r[(2 * k + 1) * cs] : 0.0f));
            }
          t->pack_a(want.data(), KP, 1, M, KP, want_packed.data());
          const bool ok = std::memcmp(want_packed.data(), packed.data(), packed.size() * sizeof(uint32_t)) == 0;
          CHECK(ok);
        }
      }
    }
    for (int64_t K : {1, 3, 32}) {
      for (int64_t J : {1, 2, 15, 64, 601}) {
        CAPTURE(K);
        CAPTURE(J);
        const int64_t lds = J + 3, ldt = kernels::wgrad_ldt(K), JP = (J + 1) / 2;
        std::vector<float> src(static_cast<size_t>(K * lds));
        for (size_t i = 0; i < src.size(); ++i) src[i] = bits(awkward_bits(rng, i + 90000));
        std::vector<uint32_t> dst(static_cast<size_t>(JP * ldt), 0xdeadbeefu);
        t->transpose_pairs(src.data(), lds, K, J, dst.data(), ldt);
        bool ok = true;
        for (int64_t j = 0; j < JP; ++j)
          for (int64_t k = 0; k < ldt; ++k) {
            const uint32_t want = k < K ? bf16_pair(src[static_cast<size_t>(k * lds + 2 * j)],
                                                    2 * j + 1 < J ? src[static_cast<size_t>(k * lds + 2 * j + 1)] : 0.0f)
                                        : 0u;
            ok = ok && dst[static_cast<size_t>(j * ldt + k)] == want;
          }
        CHECK(ok);
      }
    }
  }
}

TEST_CASE("bf16 kernels: rows_gemm_bf16 is the reference's dot-product chain, bit for bit, on every path") {
  struct Case {
    int64_t M, N, K;
    Start init;
    bool boff;
  };
  const Case cases[] = {{1, 1, 1, Start::zero, false},      {5, 7, 3, Start::row_bias, false},
                        {13, 17, 300, Start::zero, true},    {12, 32, 2, Start::col_bias, false},
                        {25, 33, 257, Start::accumulate, false}, {32, 100, 40, Start::row_bias, true},
                        {3, 5, 0, Start::col_bias, false},   {800, 32, 128, Start::accumulate, false},
                        {145, 16, 300, Start::accumulate, false}, {27, 5, 9, Start::row_bias, true}};
  for (bool awkward : {false, true}) {
    for (const Case& cs : cases) {
      CAPTURE(awkward);
      CAPTURE(cs.M);
      CAPTURE(cs.N);
      CAPTURE(cs.K);
      const int64_t ldb = cs.N + 5, ldc = cs.N + 3;
      RandomStream rng(static_cast<uint64_t>(cs.M * 131 + cs.N * 7 + cs.K), awkward ? 2 : 1, 0, 0);
      // A as fp32, packed per path; B as pairs; with awkward values the pairs are raw bit patterns
      // (denormal bf16 halves included), which every path must treat as vdpbf16ps does.
      std::vector<float> a = random_vector(static_cast<size_t>(cs.M * 2 * cs.K), 11 + cs.K);
      std::vector<uint32_t> b(static_cast<size_t>(std::max<int64_t>(cs.K, 1) * ldb));
      for (size_t i = 0; i < b.size(); ++i) {
        if (awkward) {
          b[i] = (awkward_bits(rng, i) >> 16) | (awkward_bits(rng, i + 777777) & 0xffff0000u);
        } else {
          const float lo = std::ldexp(static_cast<float>(i % 97) - 48.0f, -(static_cast<int>(i % 13)));
          b[i] = bf16_pair(lo, static_cast<float>(i % 31) * 0.37f - 5.0f);
        }
      }
      if (awkward)
        for (size_t i = 0; i < a.size(); ++i) a[i] = bits(awkward_bits(rng, i + 4000000));
      std::vector<int64_t> boff(static_cast<size_t>(cs.K));
      for (int64_t k = 0; k < cs.K; ++k) boff[static_cast<size_t>(k)] = ((k * 7) % std::max<int64_t>(cs.K, 1)) * ldb;
      std::vector<float> bias = random_vector(static_cast<size_t>(std::max(cs.M, cs.N)), 3, -4.0f, 4.0f);
      std::vector<float> c0 = random_vector(static_cast<size_t>(cs.M * ldc), 4, -2.0f, 2.0f);
      // The reference: one dpbf16_step chain per output, pairs in ascending order.
      std::vector<float> ref = c0;
      std::vector<double> exact(ref.size(), 0.0), magnitude(ref.size(), 0.0);
      for (int64_t m = 0; m < cs.M; ++m)
        for (int64_t j = 0; j < cs.N; ++j) {
          float acc = cs.init == Start::zero       ? 0.0f
                      : cs.init == Start::row_bias ? bias[static_cast<size_t>(m)]
                      : cs.init == Start::col_bias ? bias[static_cast<size_t>(j)]
                                                   : c0[static_cast<size_t>(m * ldc + j)];
          double e = acc, mag = std::fabs(acc);
          for (int64_t k = 0; k < cs.K; ++k) {
            const uint32_t ap = bf16_pair(a[static_cast<size_t>(m * 2 * cs.K + 2 * k)], a[static_cast<size_t>(m * 2 * cs.K + 2 * k + 1)]);
            const uint32_t bp = b[static_cast<size_t>((cs.boff ? boff[static_cast<size_t>(k)] : k * ldb) + j)];
            acc = dpbf16_step(acc, ap, bp);
            const double p0 = static_cast<double>(from_bf16(static_cast<uint16_t>(ap))) * from_bf16(static_cast<uint16_t>(bp));
            const double p1 = static_cast<double>(from_bf16(static_cast<uint16_t>(ap >> 16))) * from_bf16(static_cast<uint16_t>(bp >> 16));
            e += p0 + p1;
            mag += std::fabs(p0) + std::fabs(p1);
          }
          ref[static_cast<size_t>(m * ldc + j)] = acc;
          exact[static_cast<size_t>(m * ldc + j)] = e;
          magnitude[static_cast<size_t>(m * ldc + j)] = mag;
        }
      if (!awkward) {
        // Close to the fp64 sum of the bf16-rounded products: 2K roundings of at most 2^-24 of a partial sum.
        bool close = true;
        for (int64_t m = 0; m < cs.M; ++m)
          for (int64_t j = 0; j < cs.N; ++j) {
            const size_t i = static_cast<size_t>(m * ldc + j);
            close = close && std::fabs(ref[i] - exact[i]) <= 2.0 * static_cast<double>(cs.K) * 0x1p-24 * magnitude[i] + 1e-30;
          }
        CHECK(close);
      }
      for (const KernelTable* t : tables()) {
        CAPTURE(isa_name(t->isa));
        std::vector<const float*> rows(static_cast<size_t>(cs.M));
        for (int64_t m = 0; m < cs.M; ++m) rows[static_cast<size_t>(m)] = a.data() + m * 2 * cs.K;
        std::vector<uint32_t> packed(static_cast<size_t>(cs.M * cs.K) + 1);
        t->pack_a_bf16(rows.data(), 1, cs.M, 2 * cs.K, packed.data());
        std::vector<float> c = c0;
        kernels::RowsGemmBf16 g;
        g.M = cs.M;
        g.N = cs.N;
        g.K = cs.K;
        g.a_packed = packed.data();
        g.b = b.data();
        g.boff = cs.boff ? boff.data() : nullptr;
        g.ldb = ldb;
        g.c = c.data();
        g.ldc = ldc;
        g.init = cs.init;
        g.bias = bias.data();
        t->rows_gemm_bf16(g);
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < c.size(); ++i) {
          const bool nan_both = std::isnan(c[i]) && std::isnan(ref[i]);
          if (!same(c[i], ref[i]) && !nan_both) {
            if (bad == 0) first = i;
            ++bad;
          }
        }
        CAPTURE(first);
        CAPTURE(c[first]);
        CAPTURE(ref[first]);
        CHECK(bad == 0);
        // The same product with A's rows read in place (row_pairs_bf16) instead of packed.
        std::vector<uint32_t> arow_data(static_cast<size_t>(cs.M * cs.K) + 1);
        std::vector<const uint32_t*> arows(static_cast<size_t>(cs.M));
        for (int64_t m = 0; m < cs.M; ++m) {
          t->row_pairs_bf16(rows[static_cast<size_t>(m)], 2 * cs.K, arow_data.data() + m * cs.K);
          arows[static_cast<size_t>(m)] = arow_data.data() + m * cs.K;
        }
        std::vector<float> c2 = c0;
        g.a_packed = nullptr;
        g.a_rows = arows.data();
        g.c = c2.data();
        t->rows_gemm_bf16(g);
        bool same_rows = true;  // (NaN payloads are not part of the contract; see the reference comparison)
        for (size_t i = 0; i < c.size(); ++i) same_rows = same_rows && (same(c2[i], c[i]) || (std::isnan(c2[i]) && std::isnan(c[i])));
        CHECK(same_rows);
      }
    }
  }
}

TEST_CASE("bf16 kernels: the paired column sources equal the fp32 ones, paired") {
  // Two images: 3 channels (odd: the last pair's high half is zero) and 4; stride 1 (shifted) and 2 (im2col).
  for (int64_t C : {3, 4}) {
    const int64_t H = 9, W = 11;
    std::vector<float> img = random_vector(static_cast<size_t>(C * H * W), 77 + C);
    img[5] = bits(0x00000003u);  // a denormal becomes a zero in the pairs
    for (const KernelTable* t : tables()) {
      CAPTURE(isa_name(t->isa));
      CAPTURE(C);
      kernels::ShiftedSource s;
      s.src = img.data();
      s.C = C;
      s.Hs = H;
      s.Ws = W;
      s.S = 3;
      s.dw = 1;
      s.sw = 1;
      s.top = 1;
      s.left = 1;
      s.Q = W;
      s.rows = H + 2;
      std::vector<float> fp(static_cast<size_t>(C * s.S * s.rows * s.Q));
      s.out = fp.data();
      t->shifted_source(s);
      const int64_t plane = s.rows * s.Q, C2 = (C + 1) / 2;
      std::vector<uint32_t> pairs(static_cast<size_t>(C2 * s.S * plane));
      std::vector<float> tmp(static_cast<size_t>(2 * plane));
      t->shifted_source_bf16(s, pairs.data(), tmp.data());
      bool ok = true;
      for (int64_t c2 = 0; c2 < C2; ++c2)
        for (int64_t si = 0; si < s.S; ++si)
          for (int64_t i = 0; i < plane; ++i) {
            const float lo = fp[static_cast<size_t>((2 * c2 * s.S + si) * plane + i)];
            const float hi = 2 * c2 + 1 < C ? fp[static_cast<size_t>(((2 * c2 + 1) * s.S + si) * plane + i)] : 0.0f;
            ok = ok && pairs[static_cast<size_t>((c2 * s.S + si) * plane + i)] == bf16_pair(lo, hi);
          }
      CHECK(ok);
      kernels::Im2col m;
      m.src = img.data();
      m.C = C;
      m.Hs = H;
      m.Ws = W;
      m.R = 3;
      m.S = 3;
      m.sh = 2;
      m.sw = 2;
      m.top = 1;
      m.left = 1;
      m.P = (H + 2 - 3) / 2 + 1;
      m.Q = (W + 2 - 3) / 2 + 1;
      const int64_t pq = m.P * m.Q;
      std::vector<float> col(static_cast<size_t>(C * 9 * pq));
      m.out = col.data();
      t->im2col(m);
      std::vector<uint32_t> cpairs(static_cast<size_t>(C2 * 9 * pq));
      std::vector<float> ctmp(static_cast<size_t>(2 * pq));
      t->im2col_bf16(m, cpairs.data(), ctmp.data());
      ok = true;
      for (int64_t c2 = 0; c2 < C2; ++c2)
        for (int64_t rs = 0; rs < 9; ++rs)
          for (int64_t i = 0; i < pq; ++i) {
            const float lo = col[static_cast<size_t>((2 * c2 * 9 + rs) * pq + i)];
            const float hi = 2 * c2 + 1 < C ? col[static_cast<size_t>(((2 * c2 + 1) * 9 + rs) * pq + i)] : 0.0f;
            ok = ok && cpairs[static_cast<size_t>((c2 * 9 + rs) * pq + i)] == bf16_pair(lo, hi);
          }
      CHECK(ok);
    }
  }
}

TEST_CASE("bf16 kernels: the bf16 peak probe runs on every path") {
  for (const KernelTable* t : tables()) {
    CAPTURE(isa_name(t->isa));
    CHECK(t->dpbf16_probe(10) == 10.0 * 4.0 * t->lanes * (t->isa == Isa::generic ? 8 : t->isa == Isa::avx2 ? 12 : 24));
  }
  CHECK(bf16_peak_gflops(Isa::generic) > 0.0);
}
