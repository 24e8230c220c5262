// The kernels, written once over a vector-traits class V and compiled once per instruction set: avx512.cpp,
// avx2.cpp and generic.cpp each define V and STRIDE_KERNEL_NS and include this file, so every path runs the
// same loops and the same FMA chains; only V::L (lanes), the register tiles and the masks differ.
// No include guard on purpose; everything lives in the path's own namespace, so no inline function of one
// instruction set can be picked by the linker for another.
#include <algorithm>
#include <array>
#include <bit>
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

// klist, when set, names the kc rows of the reduction block to run (ascending); the others
// are skipped (LiveRows).
template <int MR, int NV, bool Tail>
void rows_tile(int64_t kc, const int32_t* klist, const float* a, const float* b, const int64_t* boff, int64_t ldb,
               int64_t j0, int last, float* c, int64_t ldc, Start init, const float* bias) {
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
  auto step = [&](int64_t k) __attribute__((always_inline)) {
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
  };
  if (klist)
    for (int64_t i = 0; i < kc; ++i) step(klist[i]);
  else
    for (int64_t k = 0; k < kc; ++k) step(k);
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

using RowsTileFn = void (*)(int64_t, const int32_t*, const float*, const float*, const int64_t*, int64_t, int64_t,
                            int, float*, int64_t, Start, const float*);

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

int64_t a_panels(int64_t M) { return panel_count(M); }

void pack_a_part(const float* src, int64_t rs, int64_t cs, int64_t M, int64_t K, int64_t p, int64_t k0, int64_t k1,
                 float* dst) {
  const int64_t m0 = panel_begin(M, p), mr = panel_begin(M, p + 1) - m0;
  float* out = dst + m0 * K;
  for (int64_t k = k0; k < k1; ++k)
    for (int64_t i = 0; i < mr; ++i) out[k * mr + i] = src[(m0 + i) * rs + k * cs];
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

void plan_live_rows(const int32_t* begin, const int32_t* end, int64_t N, int64_t K, LiveRows& out) {
  constexpr int64_t NR = V::NV * L;
  out.isa = V::isa;
  out.N = N;
  out.K = K;
  out.start.clear();
  out.rows.clear();
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t cols = std::min(NR, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      out.start.push_back(static_cast<int32_t>(out.rows.size()));
      for (int64_t k = 0; k < std::min(kKc, K - k0); ++k)
        if (begin[k0 + k] < j0 + cols && end[k0 + k] > j0) out.rows.push_back(static_cast<int32_t>(k));
    }
  }
  out.start.push_back(static_cast<int32_t>(out.rows.size()));
}

// The plan when it was made for this path and an N x K product; a plan for another would name the wrong rows,
// so every row runs then (the same bits).
inline const LiveRows* plan_for(const LiveRows* live, int64_t N, int64_t K) {
  return live && live->isa == V::isa && live->N == N && live->K == K ? live : nullptr;
}

// The rows of B that block `block` of a product runs (LiveRows): nullptr with kc unchanged when it runs all
// kc, else the list, kc set to its length.
inline const int32_t* planned_rows(const LiveRows* live, int64_t block, int64_t& kc) {
  if (!live) return nullptr;
  const int64_t first = live->start[static_cast<size_t>(block)], n = live->start[static_cast<size_t>(block) + 1] - first;
  if (n == kc) return nullptr;
  kc = n;
  return live->rows.data() + first;
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
  const LiveRows* live = plan_for(g.live, g.N, g.K);
  int64_t block = 0;
  for (int64_t j0 = 0; j0 < g.N; j0 += NR) {
    const int64_t cols = std::min(NR, g.N - j0);
    const int64_t nv = (cols + L - 1) / L;
    const int last = static_cast<int>(cols - (nv - 1) * L);
    const int64_t tail_flag = last < L ? 1 : 0;
    for (int64_t k0 = 0; k0 < g.K; k0 += kKc) {
      int64_t kc = std::min(kKc, g.K - k0);
      const Start init = k0 == 0 ? g.init : Start::accumulate;
      const float* b = g.boff ? g.b : g.b + k0 * g.ldb;
      const int64_t* boff = g.boff ? g.boff + k0 : nullptr;
      const int32_t* klist = planned_rows(live, block++, kc);
      if (kc == 0 && init == Start::accumulate) continue;  // C keeps its value
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t m0 = panel_begin(g.M, p), mr = panel_begin(g.M, p + 1) - m0;
        const float* bias = init == Start::row_bias ? g.bias + m0 : init == Start::col_bias ? g.bias + j0 : nullptr;
        kRowsTiles[static_cast<size_t>(((mr - 1) * V::NV + (nv - 1)) * 2 + tail_flag)](
            kc, klist, g.a_packed + m0 * g.K + k0 * mr, b, boff, g.ldb, j0, last, g.c + m0 * g.ldc + j0, g.ldc, init,
            bias);
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
inline void zero_floats(float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + L <= n; i += L) V::storeu(dst + i, V::zero());
  if (i < n) V::mask_storeu(dst + i, V::lanes(0, static_cast<int>(n - i)), V::zero());
}

// rows x Q output plane from one source plane (Hs x Ws): dst[i * Q + q] = src[(i * sh + ro) * Ws + q * sw + o]
// where that lies inside the plane, else 0. The masks of a column chunk are the same for every row, so they
// are computed once and the rows run as one masked load and store each.
inline void copy_plane(float* dst, const float* src, int64_t rows, int64_t sh, int64_t ro, int64_t Hs, int64_t Ws,
                       int64_t Q, int64_t sw, int64_t o) {
  // Rows whose source row h = i * sh + ro lies in [0, Hs): i in [i_lo, i_hi).
  auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
  const int64_t i_lo = std::clamp<int64_t>(ceil_div(-ro, sh), 0, rows);
  const int64_t i_hi = std::clamp<int64_t>(ceil_div(Hs - ro, sh), i_lo, rows);
  zero_floats(dst, i_lo * Q);
  zero_floats(dst + i_hi * Q, (rows - i_hi) * Q);
  if (i_lo == i_hi) return;
  if (sw == 1) {
    const int64_t lo = std::max<int64_t>(0, -o), hi = std::min<int64_t>(Q, Ws - o);  // valid q: [lo, hi)
    for (int64_t q = 0; q < Q; q += L) {
      const int64_t a = std::clamp<int64_t>(lo - q, 0, L), b = std::clamp<int64_t>(hi - q, 0, L);
      const bool full_store = q + L <= Q;
      const mask store = V::lanes(0, static_cast<int>(std::min<int64_t>(L, Q - q)));
      float* d = dst + i_lo * Q + q;
      const float* sp = src + (i_lo * sh + ro) * Ws + q + o;
      const int64_t step = sh * Ws;
      if (a >= b) {
        for (int64_t i = i_lo; i < i_hi; ++i, d += Q)
          full_store ? V::storeu(d, V::zero()) : V::mask_storeu(d, store, V::zero());
      } else if (a == 0 && b == L && full_store) {
        for (int64_t i = i_lo; i < i_hi; ++i, d += Q, sp += step) V::storeu(d, V::loadu(sp));
      } else {
        const mask load = V::lanes(static_cast<int>(a), static_cast<int>(b));
        for (int64_t i = i_lo; i < i_hi; ++i, d += Q, sp += step) {
          const vec x = V::maskz_loadu(load, sp);
          full_store ? V::storeu(d, x) : V::mask_storeu(d, store, x);
        }
      }
    }
    return;
  }
  if (sw == 2) {
    // Output lanes [q, q + L) read the even lanes of the 2L floats from row + 2q + o; those outside the row
    // are masked to zero.
    for (int64_t q = 0; q < Q; q += L) {
      const int64_t first = 2 * q + o;  // source column of lane 0
      const int64_t a = std::clamp<int64_t>(-first, 0, 2 * L), b = std::clamp<int64_t>(Ws - first, a, 2 * L);
      const mask m0 = V::lanes(static_cast<int>(std::min<int64_t>(a, L)), static_cast<int>(std::min<int64_t>(b, L)));
      const mask m1 = V::lanes(static_cast<int>(std::max<int64_t>(a - L, 0)), static_cast<int>(std::max<int64_t>(b - L, 0)));
      const bool full_store = q + L <= Q;
      const mask store = V::lanes(0, static_cast<int>(std::min<int64_t>(L, Q - q)));
      for (int64_t i = i_lo; i < i_hi; ++i) {
        const float* sp = src + (i * sh + ro) * Ws + first;
        const vec x = V::even(V::maskz_loadu(m0, sp), V::maskz_loadu(m1, sp + L));
        full_store ? V::storeu(dst + i * Q + q, x) : V::mask_storeu(dst + i * Q + q, store, x);
      }
    }
    return;
  }
  for (int64_t i = i_lo; i < i_hi; ++i) {
    const float* row = src + (i * sh + ro) * Ws;
    for (int64_t q = 0; q < Q; ++q) {
      const int64_t w = q * sw + o;
      dst[i * Q + q] = w >= 0 && w < Ws ? row[w] : 0.0f;
    }
  }
}

// The adjoint of im2col onto a plane that holds every column it reads (the padded input):
// dst[c][p * sh + r * dh][q * sw + s * dw] += col[((c * R + r) * S + s) * P * Q + p * Q + q], in the order
// (c, r, s, p, q); lanes of a vector are distinct elements, so every path adds in that order.
// Stride 2 spreads a row of sources over every other float of the destination row, adding -0.0 (which
// changes nothing) in between; with dw = 1, kernel columns s and s + 1 land on the even and the odd floats of
// the same span, so they run as one pass of interleaved sources: each float gets the addend it got before,
// and a float that column s + 2 also reaches still gets it afterwards (two passes of the row instead of three
// for a 3-wide kernel).
void col2im_add(const Im2col& s, const float* col, float* dst) {
  const int64_t Hs = s.Hs, Ws = s.Ws, P = s.P, Q = s.Q;
  // Stride 2: the sources of output columns q.. (interleaved with the next kernel column's when paired) added
  // onto the destination floats from dq.
  auto spread_add = [&](float* dq, int64_t q, const float* in, const float* in_next) {
    // Floats of the destination touched: the row spans 2 (Q - 1) + 1 floats alone, one more when paired.
    const int64_t n = std::min<int64_t>(2 * L, 2 * (Q - q) - (in_next ? 0 : 1));
    if (n == 2 * L && q + L <= Q) {  // inside the row: no masks
      vec lo, hi;
      if (in_next) V::zip(V::loadu(in + q), V::loadu(in_next + q), lo, hi);
      else V::spread(V::loadu(in + q), lo, hi);
      V::storeu(dq, V::add(V::loadu(dq), lo));
      V::storeu(dq + L, V::add(V::loadu(dq + L), hi));
      return;
    }
    const mask m0 = V::lanes(0, static_cast<int>(std::min<int64_t>(n, L)));
    const mask m1 = V::lanes(0, static_cast<int>(std::max<int64_t>(n - L, 0)));
    const bool full = q + L <= Q;
    const mask tail = V::lanes(0, static_cast<int>(std::min<int64_t>(L, Q - q)));
    const vec v = full ? V::loadu(in + q) : V::maskz_loadu(tail, in + q);
    vec lo, hi;
    if (in_next) V::zip(v, full ? V::loadu(in_next + q) : V::maskz_loadu(tail, in_next + q), lo, hi);
    else V::spread(v, lo, hi);
    V::mask_storeu(dq, m0, V::add(V::maskz_loadu(m0, dq), lo));
    if (n > L) V::mask_storeu(dq + L, m1, V::add(V::maskz_loadu(m1, dq + L), hi));
  };
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t si = 0; si < s.S;) {
        const bool paired = s.sw == 2 && s.dw == 1 && si + 1 < s.S;
        const float* in = col + ((c * s.R + r) * s.S + si) * P * Q;
        for (int64_t p = 0; p < P; ++p, in += Q) {
          float* d = dst + (c * Hs + p * s.sh + r * s.dh) * Ws + si * s.dw;
          if (s.sw == 1) {
            for (int64_t q = 0; q < Q; q += L) {
              if (q + L <= Q) {
                V::storeu(d + q, V::add(V::loadu(d + q), V::loadu(in + q)));
              } else {
                const mask m = V::lanes(0, static_cast<int>(Q - q));
                V::mask_storeu(d + q, m, V::add(V::maskz_loadu(m, d + q), V::maskz_loadu(m, in + q)));
              }
            }
          } else if (s.sw == 2) {
            for (int64_t q = 0; q < Q; q += L) spread_add(d + 2 * q, q, in, paired ? in + P * Q : nullptr);
          } else {
            for (int64_t q = 0; q < Q; ++q) d[q * s.sw] += in[q];
          }
        }
        si += paired ? 2 : 1;
      }
}

void shifted_source(const ShiftedSource& s) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t si = 0; si < s.S; ++si)
      copy_plane(s.out + (c * s.S + si) * s.rows * s.Q, s.src + c * s.Hs * s.Ws, s.rows, 1, -s.top, s.Hs, s.Ws, s.Q,
                 s.sw, si * s.dw - s.left);
}

void im2col(const Im2col& s) {
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t si = 0; si < s.S; ++si)
        copy_plane(s.out + ((c * s.R + r) * s.S + si) * s.P * s.Q, s.src + c * s.Hs * s.Ws, s.P, s.sh,
                   r * s.dh - s.top, s.Hs, s.Ws, s.Q, s.sw, si * s.dw - s.left);
}

void transpose(const float* src, int64_t lds, int64_t K, int64_t J, float* dst, int64_t ldt) {
  const int64_t K8 = K / 8 * 8, J8 = J / 8 * 8;
  for (int64_t j = 0; j < J8; j += 8)
    for (int64_t k = 0; k < K8; k += 8) V::t8x8(src + k * lds + j, lds, dst + j * ldt + k, ldt);
  for (int64_t j = 0; j < J; ++j) {
    for (int64_t k = j < J8 ? K8 : 0; k < K; ++k) dst[j * ldt + k] = src[k * lds + j];
    for (int64_t k = K; k < ldt; ++k) dst[j * ldt + k] = 0.0f;
  }
}

void transpose_rows(const float* const* rows, int64_t K, int64_t J, float* dst, int64_t ldt) {
  const int64_t K8 = K / 8 * 8, J8 = J / 8 * 8;
  for (int64_t j = 0; j < J8; j += 8) {
    for (int64_t k = 0; k < K8; k += 8) V::t8x8_rows(rows + k, j, dst + j * ldt + k, ldt);
    if (K8 < ldt)
      for (int64_t jj = j; jj < j + 8; ++jj) {
        for (int64_t k = K8; k < K; ++k) dst[jj * ldt + k] = rows[k][jj];
        zero_floats(dst + jj * ldt + K, ldt - K);
      }
  }
  for (int64_t j = J8; j < J; ++j) {
    for (int64_t k = 0; k < K; ++k) dst[j * ldt + k] = rows[k][j];
    zero_floats(dst + j * ldt + K, ldt - K);
  }
}

// ---- reductions and element-wise passes -------------------------------------------------------------------
// Sums with a fixed lane scheme: element i of a run goes to partial sum i % 16, each partial a chain of
// double additions in index order. Every path computes exactly these 16 chains (the compiler vectorizes the
// inner loop across partials, which reorders nothing), so the sums agree to the bit.
// The partials live in local arrays for the loop, so the compiler keeps them in registers and knows the two
// of sum16_dy do not alias.
void sum16(const float* x, int64_t n, double* acc) {
  double a[16];
  for (int l = 0; l < 16; ++l) a[l] = acc[l];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) a[l] += static_cast<double>(x[i + l]);
  for (; i < n; ++i) a[i % 16] += static_cast<double>(x[i]);
  for (int l = 0; l < 16; ++l) acc[l] = a[l];
}

void sum16_sq(const float* x, int64_t n, double shift, double* acc) {
  double a[16];
  for (int l = 0; l < 16; ++l) a[l] = acc[l];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) {
      const double d = static_cast<double>(x[i + l]) - shift;
      a[l] += d * d;
    }
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - shift;
    a[i % 16] += d * d;
  }
  for (int l = 0; l < 16; ++l) acc[l] = a[l];
}

// acc_dy[l] += dy; acc_dyx[l] += dy * ((x - mean) * invstd), with the lane scheme of sum16 (two loops:
// GCC vectorizes each alone, not the pair).
void sum16_dy(const float* dy, const float* x, int64_t n, double mean, double invstd, double* acc_dy, double* acc_dyx) {
  sum16(dy, n, acc_dy);
  double b[16];
  for (int l = 0; l < 16; ++l) b[l] = acc_dyx[l];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l)
      b[l] += static_cast<double>(dy[i + l]) * ((static_cast<double>(x[i + l]) - mean) * invstd);
  for (; i < n; ++i) b[i % 16] += static_cast<double>(dy[i]) * ((static_cast<double>(x[i]) - mean) * invstd);
  for (int l = 0; l < 16; ++l) acc_dyx[l] = b[l];
}

// y = (x - a) * b + c, each operation rounded (no FMA).
void affine(const float* x, float* y, int64_t n, float a, float b, float c) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - a) * b + c;
}

// dx = k * (dy - a - (x - mean) * invstd * b), each operation rounded.
void bn_dx(const float* dy, const float* x, float* dx, int64_t n, float k, float a, float b, float mean, float invstd) {
  for (int64_t i = 0; i < n; ++i) dx[i] = k * (dy[i] - a - (x[i] - mean) * invstd * b);
}

// y = max(x, 0), NaN kept (x < 0 ? 0 : x); dx = y > 0 ? dy : 0.
void relu_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}
void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// ---- the exact gradient sum's conversions (framework/exact_sum.cpp) ------------------------------------------
// The largest |x[i]| as the bits of a non-negative float: an integer max (order-free); NaN and infinity have
// every exponent bit set, so they compare above every finite value.
uint32_t max_abs_bits(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<uint32_t>(x[i]) & 0x7fffffffu);
  return m;
}

// v (|v| < 2^62, an exact product of a float and a power of two) rounded to the nearest int64, ties to even,
// with double arithmetic and integer adds only, so every instruction set vectorizes it (a double -> int64
// conversion instruction exists only with AVX-512DQ). Adding 1.5 * 2^52 to |u| < 2^51 lands where doubles are
// the integers, so the add rounds u (ties to even) and the sum's bits minus the constant's are round(u). v is
// split as hi * 2^32 + lo: hi = round(v / 2^32), lo = v - hi * 2^32 is exact and |lo| <= 2^31, and since
// hi * 2^32 is even, round(v) = hi * 2^32 + round(lo), ties included.
constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52

inline int64_t nearest_int64(double v) {
  constexpr int64_t kMagicBits = std::bit_cast<int64_t>(kMagic);
  const double hi = v * 0x1p-32 + kMagic;
  const double lo = v - (hi - kMagic) * 0x1p32;
  const auto hi_int = static_cast<uint64_t>(std::bit_cast<int64_t>(hi) - kMagicBits);
  return static_cast<int64_t>(hi_int << 32) + (std::bit_cast<int64_t>(lo + kMagic) - kMagicBits);
}

// nearest_int64(x * factor) in fewer instructions where FMAs are cheap: hi = fma(x, factor / 2^32, magic) and
// lo = fma(hi - magic, -2^32, x * factor) round exactly where nearest_int64's separate operations do (the
// products are exact: powers of two), and the two constants' bits come off in one subtraction (mod 2^64).
// The same integer; the portable path keeps nearest_int64 (its fma is a library call).
inline int64_t nearest_int64_scaled(float x, double factor, double factor_hi) {
  if constexpr (V::isa == Isa::generic) {
    return nearest_int64(static_cast<double>(x) * factor);
  } else {
    constexpr auto kMagicBits = std::bit_cast<uint64_t>(kMagic);
    const double xd = static_cast<double>(x);
    const double hi = __builtin_fma(xd, factor_hi, kMagic);
    const double lo = __builtin_fma(hi - kMagic, -0x1p32, xd * factor);
    const uint64_t bits = (std::bit_cast<uint64_t>(hi) << 32) + std::bit_cast<uint64_t>(lo + kMagic);
    return static_cast<int64_t>(bits - ((kMagicBits << 32) + kMagicBits));
  }
}

// out[i] = the sum over the sources of the nearest int64 to x[offset + i] * factor; factor is a power of two and
// every |x * factor| < 2^62. A window of 256 sums (2 KB) takes every source in turn, so the sums stay in L1
// while the sources stream in.
void to_fixed(const float* const* sources, int64_t count, int64_t offset, int64_t n, double factor, int64_t* out) {
  constexpr int64_t kWindow = 256;
  const double factor_hi = factor * 0x1p-32;
  for (int64_t i0 = 0; i0 < n; i0 += kWindow) {
    const int64_t m = std::min(kWindow, n - i0);
    int64_t* o = out + i0;
    if (count == 0) std::fill(o, o + m, int64_t{0});
    for (int64_t k = 0; k < count; ++k) {
      const float* x = sources[k] + offset + i0;
      if (k == 0)
        for (int64_t i = 0; i < m; ++i) o[i] = nearest_int64_scaled(x[i], factor, factor_hi);
      else
        for (int64_t i = 0; i < m; ++i) o[i] += nearest_int64_scaled(x[i], factor, factor_hi);
    }
  }
}

// ---- the optimizer ------------------------------------------------------------------------------------------
// SgdStep's rule. Plain loops the compiler vectorizes for the path (the portable build would call fmaf per
// element); __builtin_fmaf, because std::fma is compiled outside this path's target and would not inline.
template <bool Decay, bool First, bool Nesterov>
void sgd_momentum(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, const SgdStep& s) {
  const float wd = s.weight_decay, momentum = s.momentum, neg_lr = s.neg_lr;
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (Decay) d = __builtin_fmaf(p[i], wd, d);  // d_p.add(param, alpha=wd)
    float b;
    if constexpr (First) {
      b = d;  // torch.clone(d_p)
    } else {
      b = buf[i] * momentum;  // buf.mul_(momentum)
      b = b + d;              // .add_(d_p, alpha=1): fmadd with 1 is a plain add
    }
    buf[i] = b;
    if constexpr (Nesterov) d = __builtin_fmaf(b, momentum, d);  // d_p.add(buf, alpha=momentum)
    else d = b;
    p[i] = __builtin_fmaf(d, neg_lr, p[i]);  // param.add_(d_p, alpha=-lr)
  }
}

template <bool Decay>
void sgd_plain(float* __restrict p, const float* __restrict g, int64_t n, const SgdStep& s) {
  const float wd = s.weight_decay, neg_lr = s.neg_lr;
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (Decay) d = __builtin_fmaf(p[i], wd, d);
    p[i] = __builtin_fmaf(d, neg_lr, p[i]);
  }
}

void sgd_step(float* p, const float* g, float* buf, int64_t n, const SgdStep& s) {
  if (!s.use_momentum) {
    s.decay ? sgd_plain<true>(p, g, n, s) : sgd_plain<false>(p, g, n, s);
    return;
  }
  switch ((s.decay ? 4 : 0) | (s.first ? 2 : 0) | (s.nesterov ? 1 : 0)) {
    case 0: sgd_momentum<false, false, false>(p, g, buf, n, s); break;
    case 1: sgd_momentum<false, false, true>(p, g, buf, n, s); break;
    case 2: sgd_momentum<false, true, false>(p, g, buf, n, s); break;
    case 3: sgd_momentum<false, true, true>(p, g, buf, n, s); break;
    case 4: sgd_momentum<true, false, false>(p, g, buf, n, s); break;
    case 5: sgd_momentum<true, false, true>(p, g, buf, n, s); break;
    case 6: sgd_momentum<true, true, false>(p, g, buf, n, s); break;
    default: sgd_momentum<true, true, true>(p, g, buf, n, s); break;
  }
}

// AdamStep's rule; the loop vectorizes like SGD's (sqrt and division are correctly rounded in every lane,
// and -fno-math-errno lets the compiler vectorize the sqrt).
template <AdamStep::Decay D>
void adam_elements(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                   int64_t n, const AdamStep& s) {
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i], gi = g[i];
    if constexpr (D == AdamStep::Decay::decoupled) pi = pi * s.decoupled;           // param.mul_(1 - lr*wd)
    if constexpr (D == AdamStep::Decay::l2) gi = __builtin_fmaf(pi, s.l2, gi);       // grad.add(param, alpha=wd)
    const float mi = __builtin_fmaf(gi, s.one_minus_beta1, m[i] * s.beta1);  // exp_avg.mul_(b1).add_(g, alpha=1-b1)
    // exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2): torch's build fuses addcmul's self + (value*g)*g
    // into an FMA (checked against torch 1.13 on 100k random elements: fused matches all, unfused ~5% off).
    const float vi = __builtin_fmaf(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float denom = __builtin_sqrtf(vi) / s.bias_correction2_sqrt + s.eps;  // (sqrt / bc2_sqrt).add_(eps)
    p[i] = pi + s.neg_step_size * mi / denom;                                     // addcdiv_(m, denom, -step_size)
    m[i] = mi;
    v[i] = vi;
  }
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s) {
  switch (s.decay) {
    case AdamStep::Decay::none: adam_elements<AdamStep::Decay::none>(p, g, m, v, n, s); break;
    case AdamStep::Decay::l2: adam_elements<AdamStep::Decay::l2>(p, g, m, v, n, s); break;
    case AdamStep::Decay::decoupled: adam_elements<AdamStep::Decay::decoupled>(p, g, m, v, n, s); break;
  }
}

// ---- pooling -----------------------------------------------------------------------------------------------
// How to load lanes q..q+L-1 of row[q' * sw + o] (q' the lane's output column): the mask of lanes inside
// the row and below Q, and for stride 2 the masks of the two source vectors. Depends only on (q, s), so the
// pooling kernels make it once per column chunk and window column, not per row.
struct ColPlan {
  mask valid, m0, m1;
  int64_t first;  // source column of lane 0
  int64_t sw;
  bool any;
  bool full;  // every lane's column lies in the row: plain loads (AVX2's masked loads are slower on AMD Zen)
};

inline ColPlan make_plan(int64_t q, int64_t sw, int64_t o, int64_t W, int64_t Q) {
  auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
  const int64_t lo = std::max<int64_t>(ceil_div(-o, sw), 0), hi = std::min<int64_t>(ceil_div(W - o, sw), Q);
  const int64_t a = std::clamp<int64_t>(lo - q, 0, L), b = std::clamp<int64_t>(hi - q, a, L);
  ColPlan c{V::lanes(static_cast<int>(a), static_cast<int>(b)), V::lanes(0, 0), V::lanes(0, 0), q * sw + o, sw, a < b,
            false};
  if (sw == 2) {
    const int64_t sa = std::clamp<int64_t>(-c.first, 0, 2 * L), sb = std::clamp<int64_t>(W - c.first, sa, 2 * L);
    c.m0 = V::lanes(static_cast<int>(std::min<int64_t>(sa, L)), static_cast<int>(std::min<int64_t>(sb, L)));
    c.m1 = V::lanes(static_cast<int>(std::max<int64_t>(sa - L, 0)), static_cast<int>(std::max<int64_t>(sb - L, 0)));
    c.full = sa == 0 && sb == 2 * L;
  } else if (sw == 1) {
    c.m0 = c.valid;
    c.full = a == 0 && b == L;
  }
  return c;
}

// The values (0 outside the row) of a plan's lanes.
inline vec load_plan(const ColPlan& c, const float* row) {
  if (!c.any) return V::zero();
  if (c.sw == 1) return c.full ? V::loadu(row + c.first) : V::maskz_loadu(c.m0, row + c.first);
  if (c.sw == 2 && c.full) return V::even(V::loadu(row + c.first), V::loadu(row + c.first + L));
  if (c.sw == 2) return V::even(V::maskz_loadu(c.m0, row + c.first), V::maskz_loadu(c.m1, row + c.first + L));
  alignas(64) float tmp[L];
  alignas(64) float ones[L];
  V::storeu(ones, V::select(c.valid, V::set1(1.0f), V::zero()));
  for (int l = 0; l < L; ++l) tmp[l] = ones[l] != 0.0f ? row[c.first + l * c.sw] : 0.0f;
  return V::loadu(tmp);
}

constexpr int64_t kMaxPoolS = 16;  // window columns planned ahead; wider windows plan per row

// Window column s's plan for the column chunk at q, by reference (a ColPlan is three masks: copying it per
// window element cost more than the element's loads); plans holds kMaxPoolS + 1, the last for wide windows.
inline const ColPlan& window_plan(ColPlan* plans, const Pool& g, int64_t q, int64_t s) {
  if (s < kMaxPoolS) return plans[s];
  plans[kMaxPoolS] = make_plan(q, g.sw, s - g.pw, g.W, g.Q);
  return plans[kMaxPoolS];
}

// The common 2 x 2, stride-2 window without padding, every window inside the plane (lenet5's pools): a
// chunk's two source rows loaded once and split into even and odd columns, instead of a planned load per
// window element. The window's first element starts best and idx, which is what max_pool_forward's start
// (-inf, the first element's index) becomes after that element; then the same comparisons in the same
// order, so the same outputs and indices.
void max_pool_2x2(const Pool& g, const float* x, float* y, int32_t* argmax) {
  const int64_t W = g.W;
  const mask all = V::lanes(0, L);
  for (int64_t q = 0; q < g.Q; q += L) {
    const int64_t n = std::min<int64_t>(L, g.Q - q);  // output lanes of this chunk; 2n source columns
    const bool full = n == L;
    const mask out = V::lanes(0, static_cast<int>(n));
    const mask m0 = V::lanes(0, static_cast<int>(std::min<int64_t>(2 * n, L)));
    const mask m1 = V::lanes(0, static_cast<int>(std::max<int64_t>(2 * n - L, 0)));
    const typename V::ivec cols = V::imul(V::iadd(V::iota(), V::iset1(static_cast<int32_t>(q))), 2);
    auto load = [&](const float* row, vec& lo, vec& hi) {
      lo = full ? V::loadu(row) : V::maskz_loadu(m0, row);
      hi = full ? V::loadu(row + L) : V::maskz_loadu(m1, row + L);
    };
    for (int64_t plane = 0; plane < g.planes; ++plane) {
      const float* xp = x + plane * g.H * W;
      for (int64_t p = 0; p < g.P; ++p) {
        const float* r0 = xp + 2 * p * W + 2 * q;
        vec a0, a1, b0, b1;
        load(r0, a0, a1);
        load(r0 + W, b0, b1);
        const typename V::ivec first = V::iadd(cols, V::iset1(static_cast<int32_t>(2 * p * W)));
        vec best = V::even(a0, a1);
        typename V::ivec idx = first;
        auto step = [&](vec v, int64_t offset) {
          const mask t = V::take(v, best, all);
          best = V::select(t, v, best);
          idx = V::iselect(t, V::iadd(first, V::iset1(static_cast<int32_t>(offset))), idx);
        };
        step(V::odd(a0, a1), 1);
        step(V::even(b0, b1), W);
        step(V::odd(b0, b1), W + 1);
        V::mask_storeu(y + (plane * g.P + p) * g.Q + q, out, best);
        V::imask_storeu(argmax + (plane * g.P + p) * g.Q + q, out, idx);
      }
    }
  }
}

void max_pool_forward(const Pool& g, const float* x, float* y, int32_t* argmax) {
  if (g.R == 2 && g.S == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && 2 * g.P <= g.H &&
      2 * g.Q <= g.W) {
    max_pool_2x2(g, x, y, argmax);
    return;
  }
  const vec neg_inf = V::set1(-__builtin_inff());
  ColPlan plans[kMaxPoolS + 1];
  for (int64_t q = 0; q < g.Q; q += L) {
    const mask out = V::lanes(0, static_cast<int>(std::min<int64_t>(L, g.Q - q)));
    for (int64_t s = 0; s < std::min(g.S, kMaxPoolS); ++s) plans[s] = make_plan(q, g.sw, s - g.pw, g.W, g.Q);
    const typename V::ivec cols =
        V::imul(V::iadd(V::iota(), V::iset1(static_cast<int32_t>(q))), static_cast<int32_t>(g.sw));
    // Each lane starts at its window's first element (all -inf windows keep a valid index): column first_col
    // of the window's first row. Built once per column chunk: lanes written one by one and read back as a
    // vector stall store forwarding, which once per output row cost a sixth of the kernel on Zen 3.
    alignas(64) int32_t first[L];
    for (int l = 0; l < L; ++l) first[l] = q + l < g.Q ? g.first_col[q + l] : 0;
    const typename V::ivec first_cols = V::iloadu(first);
    for (int64_t plane = 0; plane < g.planes; ++plane) {
      const float* xp = x + plane * g.H * g.W;
      for (int64_t p = 0; p < g.P; ++p) {
        const int64_t hb = g.hb[p], he = g.he[p];
        typename V::ivec idx = V::iadd(first_cols, V::iset1(static_cast<int32_t>(hb * g.W)));
        vec best = neg_inf;
        for (int64_t h = hb; h < he; ++h) {
          const float* row = xp + h * g.W;
          for (int64_t s = 0; s < g.S; ++s) {
            const ColPlan& c = window_plan(plans, g, q, s);
            const vec v = load_plan(c, row);
            const mask t = V::take(v, best, c.valid);
            best = V::select(t, v, best);
            idx = V::iselect(t, V::iadd(cols, V::iset1(static_cast<int32_t>(h * g.W + s - g.pw))), idx);
          }
        }
        V::mask_storeu(y + (plane * g.P + p) * g.Q + q, out, best);
        V::imask_storeu(argmax + (plane * g.P + p) * g.Q + q, out, idx);
      }
    }
  }
}

void avg_pool_forward(const Pool& g, const float* x, float* y) {
  ColPlan plans[kMaxPoolS + 1];
  for (int64_t q = 0; q < g.Q; q += L) {
    const mask out = V::lanes(0, static_cast<int>(std::min<int64_t>(L, g.Q - q)));
    for (int64_t s = 0; s < std::min(g.S, kMaxPoolS); ++s) plans[s] = make_plan(q, g.sw, s - g.pw, g.W, g.Q);
    for (int64_t plane = 0; plane < g.planes; ++plane) {
      const float* xp = x + plane * g.H * g.W;
      for (int64_t p = 0; p < g.P; ++p) {
        // Lanes outside the plane add +0.0, which changes no sum that starts from +0.0.
        vec sum = V::zero();
        for (int64_t h = g.hb[p]; h < g.he[p]; ++h)
          for (int64_t s = 0; s < g.S; ++s)
            sum = V::add(sum, load_plan(window_plan(plans, g, q, s), xp + h * g.W));
        const vec d = V::maskz_loadu(out, g.divisor + p * g.Q + q);
        V::mask_storeu(y + (plane * g.P + p) * g.Q + q, out, V::div(sum, d));
      }
    }
  }
}

void avg_pool_backward(const Pool& g, const float* dy, float* dx) {
  alignas(64) float share[1024 + 2 * L];
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    float* dp = dx + plane * g.H * g.W;
    zero_floats(dp, g.H * g.W);
    for (int64_t p = 0; p < g.P; ++p) {
      const float* dyr = dy + (plane * g.P + p) * g.Q;
      for (int64_t q0 = 0; q0 < g.Q; q0 += 1024) {
        const int64_t qn = std::min<int64_t>(1024, g.Q - q0);
        for (int64_t q = 0; q < qn; q += L) {
          const mask m = V::lanes(0, static_cast<int>(std::min<int64_t>(L, qn - q)));
          V::storeu(share + q, V::div(V::maskz_loadu(m, dyr + q0 + q), V::maskz_loadu(m, g.divisor + p * g.Q + q0 + q)));
        }
        for (int64_t h = g.hb[p]; h < g.he[p]; ++h)
          for (int64_t s = 0; s < g.S; ++s) {
            float* row = dp + h * g.W;
            const int64_t o = s - g.pw;
            for (int64_t q = q0; q < q0 + qn; ++q) {
              const int64_t w = q * g.sw + o;
              if (w >= 0 && w < g.W) row[w] += share[q - q0];
            }
          }
      }
    }
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

// ---- bf16 (kernels.hpp, "bf16") -------------------------------------------------------------------------------
// The same register tiles and loops as rows_gemm, with a bf16 dot-product step (two multiply-adds per lane)
// where rows_gemm has an FMA: pair k of row i of A broadcast, pair k of NV vectors of B loaded.
template <int MR, int NV, bool Tail>
void rows_tile_bf16(int64_t kc, const int32_t* klist, const uint32_t* a, const uint32_t* const* arows,
                    const uint32_t* b, const int64_t* boff, int64_t ldb, int64_t j0, int last, float* c, int64_t ldc,
                    Start init, const float* bias) {
  const mask tail = V::lanes(0, last);
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
  auto step = [&](int64_t k) __attribute__((always_inline)) {
    const uint32_t* bk = (boff ? b + boff[k] : b + k * ldb) + j0;
    typename V::pvec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (Tail && v == NV - 1) ? V::pmaskz_load(tail, bk + v * L) : V::pload(bk + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      // (a is null when the rows are read in place: no offset is applied to it then.)
      const typename V::pvec ai = V::pbroadcast(arows ? arows[i] + k : a + k * MR + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::dp(acc[i][v], ai, bv[v]);
    }
  };
  if (klist)
    for (int64_t i = 0; i < kc; ++i) step(klist[i]);
  else
    for (int64_t k = 0; k < kc; ++k) step(k);
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

using RowsTileBf16Fn = void (*)(int64_t, const int32_t*, const uint32_t*, const uint32_t* const*, const uint32_t*,
                                const int64_t*, int64_t, int64_t, int, float*, int64_t, Start, const float*);

template <size_t... I>
constexpr std::array<RowsTileBf16Fn, sizeof...(I)> rows_tiles_bf16(std::index_sequence<I...>) {
  return {&rows_tile_bf16<static_cast<int>(I / 2 / V::NV) + 1, static_cast<int>(I / 2 % V::NV) + 1, (I % 2) == 1>...};
}
constexpr auto kRowsTilesBf16 = rows_tiles_bf16(std::make_index_sequence<V::MR * V::NV * 2>{});


// Pairs of the reduction per cache block: the same bytes of B per block as rows_gemm's kKc floats (and the
// same blocks, so one LiveRows plan serves both products).
constexpr int64_t kKcPairs = kKc;

void rows_gemm_bf16(const RowsGemmBf16& g) {
  if (g.M <= 0 || g.N <= 0) return;
  [[maybe_unused]] const typename V::FlushScope flush;
  constexpr int64_t NR = V::NV * L;
  const int64_t panels = panel_count(g.M);
  if (g.K == 0) {
    for (int64_t m = 0; m < g.M; ++m)
      for (int64_t j = 0; j < g.N; ++j) {
        float& cv = g.c[m * g.ldc + j];
        if (g.init == Start::zero) cv = 0.0f;
        if (g.init == Start::row_bias) cv = g.bias[m];
        if (g.init == Start::col_bias) cv = g.bias[j];
      }
    return;
  }
  const uint32_t* arows[V::MR];
  const LiveRows* live = plan_for(g.live, g.N, g.K);
  int64_t block = 0;
  for (int64_t j0 = 0; j0 < g.N; j0 += NR) {
    const int64_t cols = std::min(NR, g.N - j0);
    const int64_t nv = (cols + L - 1) / L;
    const int last = static_cast<int>(cols - (nv - 1) * L);
    const int64_t tail_flag = last < L ? 1 : 0;
    for (int64_t k0 = 0; k0 < g.K; k0 += kKcPairs) {
      int64_t kc = std::min(kKcPairs, g.K - k0);
      const Start init = k0 == 0 ? g.init : Start::accumulate;
      const uint32_t* b = g.boff ? g.b : g.b + k0 * g.ldb;
      const int64_t* boff = g.boff ? g.boff + k0 : nullptr;
      const int32_t* klist = planned_rows(live, block++, kc);
      if (kc == 0 && init == Start::accumulate) continue;  // C keeps its value
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t m0 = panel_begin(g.M, p), mr = panel_begin(g.M, p + 1) - m0;
        const float* bias = init == Start::row_bias ? g.bias + m0 : init == Start::col_bias ? g.bias + j0 : nullptr;
        if (g.a_rows)
          for (int64_t i = 0; i < mr; ++i) arows[i] = g.a_rows[m0 + i] + k0;
        kRowsTilesBf16[static_cast<size_t>(((mr - 1) * V::NV + (nv - 1)) * 2 + tail_flag)](
            kc, klist, g.a_rows ? nullptr : g.a_packed + m0 * g.K + k0 * mr, g.a_rows ? arows : nullptr, b, boff,
            g.ldb, j0, last, g.c + m0 * g.ldc + j0, g.ldc, init, bias);
      }
    }
  }
}

void pack_pairs(const float* lo, const float* hi, int64_t n, uint32_t* out) {
  int64_t i = 0;
  for (; i + L <= n; i += L) V::pstore(out + i, V::pair(V::loadu(lo + i), hi ? V::loadu(hi + i) : V::zero()));
  if (i < n) {
    const mask m = V::lanes(0, static_cast<int>(n - i));
    V::pmask_store(out + i, m, V::pair(V::maskz_loadu(m, lo + i), hi ? V::maskz_loadu(m, hi + i) : V::zero()));
  }
}

// One row of n floats as ceil(n / 2) bf16 pairs of adjacent elements (an odd n's last pair completed by 0).
inline void row_pairs(const float* src, int64_t n, uint32_t* out) {
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) V::pstore(out + i / 2, V::pair_adjacent(V::loadu(src + i), V::loadu(src + i + L)));
  for (; i < n; i += 2) out[i / 2] = bf16_pair(src[i], i + 1 < n ? src[i + 1] : 0.0f);
}

void pack_a_bf16(const float* const* rows, int64_t cs, int64_t M, int64_t K, uint32_t* dst) {
  const int64_t KP = (K + 1) / 2;
  const int64_t panels = panel_count(M);
  constexpr int64_t kChunk = 256;  // pairs converted at a time (contiguous rows)
  uint32_t row[kChunk];
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t m0 = panel_begin(M, p), mr = panel_begin(M, p + 1) - m0;
    uint32_t* out = dst + m0 * KP;
    for (int64_t i = 0; i < mr; ++i) {
      const float* src = rows[m0 + i];
      if (cs == 1) {
        for (int64_t k0 = 0; k0 < KP; k0 += kChunk) {
          const int64_t kn = std::min(kChunk, KP - k0);
          row_pairs(src + 2 * k0, std::min(2 * kn, K - 2 * k0), row);
          for (int64_t k = 0; k < kn; ++k) out[(k0 + k) * mr + i] = row[k];
        }
      } else {
        for (int64_t k = 0; k < KP; ++k)
          out[k * mr + i] = bf16_pair(src[2 * k * cs], 2 * k + 1 < K ? src[(2 * k + 1) * cs] : 0.0f);
      }
    }
  }
}

void shifted_source_bf16(const ShiftedSource& s, uint32_t* out, float* tmp) {
  const int64_t plane = s.rows * s.Q;
  for (int64_t c2 = 0; c2 < (s.C + 1) / 2; ++c2)
    for (int64_t si = 0; si < s.S; ++si) {
      const int64_t c = 2 * c2;
      copy_plane(tmp, s.src + c * s.Hs * s.Ws, s.rows, 1, -s.top, s.Hs, s.Ws, s.Q, s.sw, si * s.dw - s.left);
      const bool odd = c + 1 < s.C;
      if (odd)
        copy_plane(tmp + plane, s.src + (c + 1) * s.Hs * s.Ws, s.rows, 1, -s.top, s.Hs, s.Ws, s.Q, s.sw,
                   si * s.dw - s.left);
      pack_pairs(tmp, odd ? tmp + plane : nullptr, plane, out + (c2 * s.S + si) * plane);
    }
}

void im2col_bf16(const Im2col& s, uint32_t* out, float* tmp) {
  const int64_t plane = s.P * s.Q;
  for (int64_t c2 = 0; c2 < (s.C + 1) / 2; ++c2)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t si = 0; si < s.S; ++si) {
        const int64_t c = 2 * c2;
        copy_plane(tmp, s.src + c * s.Hs * s.Ws, s.P, s.sh, r * s.dh - s.top, s.Hs, s.Ws, s.Q, s.sw, si * s.dw - s.left);
        const bool odd = c + 1 < s.C;
        if (odd)
          copy_plane(tmp + plane, s.src + (c + 1) * s.Hs * s.Ws, s.P, s.sh, r * s.dh - s.top, s.Hs, s.Ws, s.Q, s.sw,
                     si * s.dw - s.left);
        pack_pairs(tmp, odd ? tmp + plane : nullptr, plane, out + ((c2 * s.R + r) * s.S + si) * plane);
      }
}

void transpose_pairs(const float* src, int64_t lds, int64_t K, int64_t J, uint32_t* dst, int64_t ldt) {
  const int64_t JP = (J + 1) / 2;
  constexpr int64_t kChunk = 256;
  uint32_t row[kChunk];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j0 = 0; j0 < JP; j0 += kChunk) {
      const int64_t jn = std::min(kChunk, JP - j0);
      row_pairs(src + k * lds + 2 * j0, std::min(2 * jn, J - 2 * j0), row);
      for (int64_t j = 0; j < jn; ++j) dst[(j0 + j) * ldt + k] = row[j];
    }
  for (int64_t j = 0; j < JP; ++j)
    for (int64_t k = K; k < ldt; ++k) dst[j * ldt + k] = 0u;
}

double dpbf16_probe(int64_t iterations) {
  constexpr int N = V::NACC;
  [[maybe_unused]] const typename V::FlushScope flush;
  vec acc[N];
  for (int i = 0; i < N; ++i) acc[i] = V::set1(1.0f + 0.001f * static_cast<float>(i));
  const uint32_t a_bits = bf16_pair(0.5f, 0.25f), b_bits = bf16_pair(1e-6f, -1e-6f);
  const typename V::pvec a = V::pbroadcast(&a_bits), b = V::pbroadcast(&b_bits);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) acc[i] = V::dp(acc[i], a, b);
  }
  alignas(64) float sink[L];
  vec s = acc[0];
  for (int i = 1; i < N; ++i) s = V::add(s, acc[i]);
  V::storeu(sink, s);
  volatile float keep = sink[0];
  (void)keep;
  return static_cast<double>(iterations) * N * L * 4.0;
}

const KernelTable kTable = {V::isa,      L,          &pack_a,     &rows_gemm,  &wgrad_gemm,
                            &shifted_source, &im2col, &col2im_add, &transpose, &sum16,
                            &sum16_sq,   &sum16_dy,  &affine,     &bn_dx,      &max_pool_forward,
                            &avg_pool_forward, &avg_pool_backward, &relu_forward, &relu_backward, &max_abs_bits,
                            &to_fixed,   &fma_probe, &pack_pairs, &pack_a_bf16, &row_pairs, &rows_gemm_bf16,
                            &shifted_source_bf16, &im2col_bf16, &transpose_pairs, &dpbf16_probe, &a_panels, &pack_a_part,
                            &transpose_rows, &plan_live_rows, &sgd_step, &adam_step};

}  // namespace stride::kernels::STRIDE_KERNEL_NS
