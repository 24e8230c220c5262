// The AVX-512 path: 16 lanes, a 12 x 32 register tile for rows_gemm (24 of the 32 zmm registers accumulate),
// 8 x 32 for wgrad_gemm. Only the functions below are compiled for AVX-512 (target pragma after the standard
// headers), so nothing the linker might share with other code carries AVX-512 instructions.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include <immintrin.h>

#include "framework/core/kernels/kernels.hpp"

// GCC compiles what follows for the path's instructions; clang (the sanitizer builds) ignores GCC's target
// pragma and takes its own attribute form.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace stride::kernels::avx512 {
#include "framework/core/kernels/transpose8x8.hpp"

struct V {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr Isa isa = Isa::avx512;
  static constexpr int L = 16;
  static constexpr int MR = 12, NV = 2;   // rows_gemm tile
  static constexpr int WMR = 12, WNV = 2;  // wgrad_gemm tile
  static constexpr int NACC = 24;         // independent chains of the peak probe
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float x) { return _mm512_set1_ps(x); }
  static vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static vec maskz_loadu(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void mask_storeu(float* p, mask m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
  // dst[j * ldt + k] = src[k * lds + j] for an 8 x 8 block.
  static void t8x8(const float* src, int64_t lds, float* dst, int64_t ldt) { transpose8x8(src, lds, dst, ldt); }
  static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  // Lanes [a, b) of 16.
  static mask lanes(int a, int b) { return static_cast<mask>(((1u << b) - 1u) & ~((1u << a) - 1u)); }
  // The even lanes of (lo, hi) = p[0], p[2], ..., p[30].
  static vec even(vec lo, vec hi) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
  // v spread over the even lanes of (lo, hi), the odd lanes -0.0 (adding them changes nothing).
  static void spread(vec v, vec& lo, vec& hi) {
    const __m512 nz = _mm512_set1_ps(-0.0f);
    lo = _mm512_permutex2var_ps(v, _mm512_setr_epi32(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16), nz);
    hi = _mm512_permutex2var_ps(v, _mm512_setr_epi32(8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16), nz);
  }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  // Pooling: int32 index vectors, compare masks and selects.
  using ivec = __m512i;
  static ivec iset1(int32_t x) { return _mm512_set1_epi32(x); }
  static ivec iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static ivec iadd(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
  static ivec iloadu(const int32_t* p) { return _mm512_loadu_si512(p); }
  static ivec imul(ivec a, int32_t b) { return _mm512_mullo_epi32(a, _mm512_set1_epi32(b)); }
  static void imask_storeu(int32_t* p, mask m, ivec v) { _mm512_mask_storeu_epi32(p, m, v); }
  // v > best, or v is NaN (PyTorch's max-pool test), within m.
  static mask take(vec v, vec best, mask m) {
    return static_cast<mask>((_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) & m);
  }
  static vec select(mask m, vec a, vec b) { return _mm512_mask_blend_ps(m, b, a); }
  static ivec iselect(mask m, ivec a, ivec b) { return _mm512_mask_blend_epi32(m, b, a); }
};
}  // namespace stride::kernels::avx512

#define STRIDE_KERNEL_NS avx512
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace stride::kernels {
const KernelTable& avx512_table() { return avx512::kTable; }
}  // namespace stride::kernels
