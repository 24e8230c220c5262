// The kernels, written once over a vector-traits class V and compiled once per instruction set: avx512.cpp,
// avx2.cpp and generic.cpp each define V and STRIDE_KERNEL_NS and include this file, so every path runs the
// same loops and the same FMA chains; only V::L (lanes), the register tiles and the masks differ.
// No include guard on purpose; everything lives in the path's own namespace, so no inline function of one
// instruction set can be picked by the linker for another.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "framework/core/kernels/kernels.hpp"

namespace stride::kernels::STRIDE_KERNEL_NS {

using vec = V::vec;
using mask = V::mask;
constexpr int L = V::L;

// ---- rows_gemm -------------------------------------------------------------------------------------------
// Register tile: MR rows of C by NV vectors of L columns. Row i of A comes broadcast from the packed panel
// (element (k, i) at a[k * MR + i]); the NV vectors of B from row k of B. Each accumulator is one FMA chain.
constexpr int64_t kKc = 256;  // reduction block: a KC x NR block of B (32 KB at NR = 32) stays in L1

template <int MR, int NV, bool Tail>
void rows_tile(int64_t kc, const float* a, const float* b, const int64_t* boff, int64_t ldb, int64_t j0, int last,
               float* c, int64_t ldc, Start init, const float* bias) {
  const mask tail = V::lanes(0, last);  // the valid lanes of the last vector (all of them unless Tail)
  vec acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const bool t = Tail && v == NV - 1;
      if (init == Start::row_bias)
        acc[i][v] = V::broadcast(bias + i);
      else if (init == Start::col_bias)
        acc[i][v] = t ? V::maskz_loadu(tail, bias + v * L) : V::loadu(bias + v * L);
      else if (init == Start::accumulate)
        acc[i][v] = t ? V::maskz_loadu(tail, c + i * ldc + v * L) : V::loadu(c + i * ldc + v * L);
      else
        acc[i][v] = V::zero();
    }
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = (boff ? b + boff[k] : b + k * ldb) + j0;
    vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = (Tail && v == NV - 1) ? V::maskz_loadu(tail, bk + v * L) : V::loadu(bk + v * L);
    const float* ak = a + k * MR;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vec ai = V::broadcast(ak + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (Tail && v == NV - 1)
        V::mask_storeu(c + i * ldc + v * L, tail, acc[i][v]);
      else
        V::storeu(c + i * ldc + v * L, acc[i][v]);
    }
}

using RowsTileFn = void (*)(int64_t, const float*, const float*, const int64_t*, int64_t, int64_t, int, float*,
                            int64_t, Start, const float*);

template <size_t... I>
constexpr std::array<RowsTileFn, sizeof...(I)> rows_tiles(std::index_sequence<I...>) {
  // index = ((mr - 1) * NV + (nv - 1)) * 2 + tail
  return {&rows_tile<static_cast<int>(I / 2 / V::NV) + 1, static_cast<int>(I / 2 % V::NV) + 1, (I % 2) == 1>...};
}
constexpr auto kRowsTiles = rows_tiles(std::make_index_sequence<V::MR * V::NV * 2>{});

// Panels of A: M rows cut into ceil(M / MR) panels of nearly equal height (at most MR), so a 32-row A on a
// 12-row tile runs 11 + 11 + 10 rather than 12 + 12 + 8.
inline int64_t panel_count(int64_t M) { return (M + V::MR - 1) / V::MR; }
inline int64_t panel_begin(int64_t M, int64_t p) {
  const int64_t n = panel_count(M);
  return M / n * p + std::min(p, M % n);
}

void pack_a(const float* src, int64_t rs, int64_t cs, int64_t M, int64_t K, float* dst) {
  const int64_t panels = panel_count(M);
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t m0 = panel_begin(M, p), mr = panel_begin(M, p + 1) - m0;
    float* out = dst + m0 * K;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < mr; ++i) out[k * mr + i] = src[(m0 + i) * rs + k * cs];
  }
}

void rows_gemm(const RowsGemm& g) {
  if (g.M <= 0 || g.N <= 0) return;
  constexpr int64_t NR = V::NV * L;
  const int64_t panels = panel_count(g.M);
  if (g.K == 0) {  // nothing to add: C is its initial value
    for (int64_t m = 0; m < g.M; ++m)
      for (int64_t j = 0; j < g.N; ++j) {
        float& cv = g.c[m * g.ldc + j];
        if (g.init == Start::zero) cv = 0.0f;
        if (g.init == Start::row_bias) cv = g.bias[m];
        if (g.init == Start::col_bias) cv = g.bias[j];
      }
    return;
  }
  for (int64_t j0 = 0; j0 < g.N; j0 += NR) {
    const int64_t cols = std::min(NR, g.N - j0);
    const int64_t nv = (cols + L - 1) / L;
    const int last = static_cast<int>(cols - (nv - 1) * L);
    const int64_t tail_flag = last < L ? 1 : 0;
    for (int64_t k0 = 0; k0 < g.K; k0 += kKc) {
      const int64_t kc = std::min(kKc, g.K - k0);
      const Start init = k0 == 0 ? g.init : Start::accumulate;
      const float* b = g.boff ? g.b : g.b + k0 * g.ldb;
      const int64_t* boff = g.boff ? g.boff + k0 : nullptr;
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t m0 = panel_begin(g.M, p), mr = panel_begin(g.M, p + 1) - m0;
        const float* bias = init == Start::row_bias ? g.bias + m0 : init == Start::col_bias ? g.bias + j0 : nullptr;
        kRowsTiles[static_cast<size_t>(((mr - 1) * V::NV + (nv - 1)) * 2 + tail_flag)](
            kc, g.a_packed + m0 * g.K + k0 * mr, b, boff, g.ldb, j0, last, g.c + m0 * g.ldc + j0, g.ldc, init, bias);
      }
    }
  }
}

// ---- wgrad_gemm ------------------------------------------------------------------------------------------
// Register tile: MR rows (each broadcast from its own source row) by NV vectors of output channels.
template <int MR, int NV, bool Tail>
void wgrad_tile(int64_t npix, const float* const* rows, const float* dyt, int64_t ldt, float* c, int64_t ldc,
                int last, bool accumulate) {
  const mask tail = V::lanes(0, last);
  const float* r[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) r[i] = rows[i];
  vec acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const bool t = Tail && v == NV - 1;
      acc[i][v] = !accumulate ? V::zero() : t ? V::maskz_loadu(tail, c + i * ldc + v * L) : V::loadu(c + i * ldc + v * L);
    }
  for (int64_t j = 0; j < npix; ++j) {
    vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::loadu(dyt + j * ldt + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vec ai = V::broadcast(r[i] + j);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (Tail && v == NV - 1)
        V::mask_storeu(c + i * ldc + v * L, tail, acc[i][v]);
      else
        V::storeu(c + i * ldc + v * L, acc[i][v]);
    }
}

using WgradTileFn = void (*)(int64_t, const float* const*, const float*, int64_t, float*, int64_t, int, bool);

template <size_t... I>
constexpr std::array<WgradTileFn, sizeof...(I)> wgrad_tiles(std::index_sequence<I...>) {
  return {&wgrad_tile<static_cast<int>(I / 2 / V::WNV) + 1, static_cast<int>(I / 2 % V::WNV) + 1, (I % 2) == 1>...};
}
constexpr auto kWgradTiles = wgrad_tiles(std::make_index_sequence<V::WMR * V::WNV * 2>{});

void wgrad_gemm(const WgradGemm& g) {
  constexpr int64_t NR = V::WNV * L;
  for (int64_t c0 = 0; c0 < g.cols; c0 += NR) {
    const int64_t cols = std::min(NR, g.cols - c0);
    const int64_t nv = (cols + L - 1) / L;
    const int last = static_cast<int>(cols - (nv - 1) * L);
    const int64_t tail_flag = last < L ? 1 : 0;
    for (int64_t r0 = 0; r0 < g.rows; r0 += V::WMR) {
      const int64_t mr = std::min<int64_t>(V::WMR, g.rows - r0);
      kWgradTiles[static_cast<size_t>(((mr - 1) * V::WNV + (nv - 1)) * 2 + tail_flag)](
          g.npix, g.row_ptrs + r0, g.dyt + c0, g.ldt, g.c + r0 * g.ldc + c0, g.ldc, last,
          g.init == Start::accumulate);
    }
  }
}

// ---- data movement ---------------------------------------------------------------------------------------
// dst[q] = src_row[q * sw + o] where 0 <= q * sw + o < Ws, else 0, for q < Q; src_row null = a zero row.
inline void copy_row(float* dst, const float* src_row, int64_t Q, int64_t sw, int64_t o, int64_t Ws) {
  if (!src_row) {
    for (int64_t q = 0; q < Q; q += L) {
      if (q + L <= Q)
        V::storeu(dst + q, V::zero());
      else
        V::mask_storeu(dst + q, V::lanes(0, static_cast<int>(Q - q)), V::zero());
    }
    return;
  }
  if (sw == 1) {
    // Valid q: -o <= q < Ws - o.
    const int64_t lo = std::max<int64_t>(0, -o), hi = std::min<int64_t>(Q, Ws - o);
    for (int64_t q = 0; q < Q; q += L) {
      const int64_t a = std::clamp<int64_t>(lo - q, 0, L), b = std::clamp<int64_t>(hi - q, 0, L);
      const vec x = a == 0 && b == L ? V::loadu(src_row + q + o)
                    : a < b           ? V::maskz_loadu(V::lanes(static_cast<int>(a), static_cast<int>(b)), src_row + q + o)
                                      : V::zero();
      if (q + L <= Q)
        V::storeu(dst + q, x);
      else
        V::mask_storeu(dst + q, V::lanes(0, static_cast<int>(Q - q)), x);
    }
    return;
  }
  for (int64_t q = 0; q < Q; ++q) {
    const int64_t w = q * sw + o;
    dst[q] = w >= 0 && w < Ws ? src_row[w] : 0.0f;
  }
}

void shifted_source(const ShiftedSource& s) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t si = 0; si < s.S; ++si)
      for (int64_t i = 0; i < s.rows; ++i) {
        const int64_t h = i - s.top;
        const float* row = h >= 0 && h < s.Hs ? s.src + (c * s.Hs + h) * s.Ws : nullptr;
        copy_row(s.out + ((c * s.S + si) * s.rows + i) * s.Q, row, s.Q, s.sw, si * s.dw - s.left, s.Ws);
      }
}

void im2col(const Im2col& s) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t si = 0; si < s.S; ++si) {
        float* out = s.out + ((c * s.R + r) * s.S + si) * s.P * s.Q;
        for (int64_t p = 0; p < s.P; ++p) {
          const int64_t h = p * s.sh + r * s.dh - s.top;
          const float* row = h >= 0 && h < s.Hs ? s.src + (c * s.Hs + h) * s.Ws : nullptr;
          copy_row(out + p * s.Q, row, s.Q, s.sw, si * s.dw - s.left, s.Ws);
        }
      }
}

void transpose(const float* src, int64_t lds, int64_t K, int64_t J, float* dst, int64_t ldt) {
  constexpr int64_t B = 16;  // cache blocks of 16 x 16
  for (int64_t j0 = 0; j0 < J; j0 += B) {
    const int64_t j1 = std::min(J, j0 + B);
    for (int64_t k0 = 0; k0 < K; k0 += B) {
      const int64_t k1 = std::min(K, k0 + B);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t k = k0; k < k1; ++k) dst[j * ldt + k] = src[k * lds + j];
    }
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t k = K; k < ldt; ++k) dst[j * ldt + k] = 0.0f;
  }
}

// ---- FMA peak probe --------------------------------------------------------------------------------------
double fma_probe(int64_t iterations) {
  constexpr int N = V::NACC;
  vec acc[N];
  for (int i = 0; i < N; ++i) acc[i] = V::set1(1.0f + 0.001f * static_cast<float>(i));
  const vec m = V::set1(0.9999999f), a = V::set1(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) acc[i] = V::fmadd(acc[i], m, a);
  }
  alignas(64) float sink[L];
  vec s = acc[0];
  for (int i = 1; i < N; ++i) s = V::fmadd(s, m, acc[i]);
  V::storeu(sink, s);
  volatile float keep = sink[0];
  (void)keep;
  return static_cast<double>(iterations) * N * L * 2.0;
}

const KernelTable kTable = {V::isa, L, &pack_a, &rows_gemm, &wgrad_gemm, &shifted_source, &im2col, &transpose, &fma_probe};

}  // namespace stride::kernels::STRIDE_KERNEL_NS
