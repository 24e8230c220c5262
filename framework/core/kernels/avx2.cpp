// The AVX2 + FMA path: 8 lanes, a 6 x 16 register tile for rows_gemm and wgrad_gemm (12 of the 16 ymm
// registers accumulate). Same loops and FMA chains as the AVX-512 path (impl.hpp), so the same bits.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include <immintrin.h>

#include "framework/core/bf16.hpp"
#include "framework/core/kernels/kernels.hpp"

// GCC compiles what follows for the path's instructions; clang (the sanitizer builds) ignores GCC's target
// pragma and takes its own attribute form.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace stride::kernels::avx2 {
#include "framework/core/kernels/transpose8x8.hpp"

struct V {
  using vec = __m256;
  using mask = __m256i;
  static constexpr Isa isa = Isa::avx2;
  static constexpr int L = 8;
  static constexpr int MR = 6, NV = 2;
  static constexpr int WMR = 6, WNV = 2;
  static constexpr int NACC = 12;
  static vec zero() { return _mm256_setzero_ps(); }
  static vec set1(float x) { return _mm256_set1_ps(x); }
  static vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static vec maskz_loadu(mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void storeu(float* p, vec v) { _mm256_storeu_ps(p, v); }
  // vmaskmovps / vpmaskmovd stores are microcoded on AMD Zen (measured on Zen 3: the two stores of each max
  // pool output vector were a quarter of the kernel), so a mask with every lane set stores plainly.
  static bool all(mask m) { return _mm256_movemask_ps(_mm256_castsi256_ps(m)) == 0xff; }
  static void mask_storeu(float* p, mask m, vec v) {
    if (all(m))
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, m, v);
  }
  // dst[j * ldt + k] = src[k * lds + j] for an 8 x 8 block.
  static void t8x8(const float* src, int64_t lds, float* dst, int64_t ldt) { transpose8x8(src, lds, dst, ldt); }
  // dst[j * ldt + k] = rows[k][j0 + j] for an 8 x 8 block of eight rows anywhere.
  static void t8x8_rows(const float* const* rows, int64_t j0, float* dst, int64_t ldt) {
    transpose8x8_rows(rows, j0, dst, ldt);
  }
  static vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec even(vec lo, vec hi) {
    const __m256 e = _mm256_shuffle_ps(lo, hi, 0x88);  // lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8));
  }
  static vec odd(vec lo, vec hi) {
    const __m256 o = _mm256_shuffle_ps(lo, hi, 0xdd);  // lo1 lo3 hi1 hi3 | lo5 lo7 hi5 hi7
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8));
  }
  static void spread(vec v, vec& lo, vec& hi) {
    const __m256 nz = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_unpacklo_ps(v, nz), b = _mm256_unpackhi_ps(v, nz);  // v0 . v1 . v4 . v5 . | v2 . v3 . v6 . v7 .
    lo = _mm256_permute2f128_ps(a, b, 0x20);
    hi = _mm256_permute2f128_ps(a, b, 0x31);
  }
  // a and b interleaved over (lo, hi): a0 b0 a1 b1 ...
  static void zip(vec a, vec b, vec& lo, vec& hi) {
    const __m256 x = _mm256_unpacklo_ps(a, b), y = _mm256_unpackhi_ps(a, b);  // a0 b0 a1 b1 a4 b4 a5 b5 | a2 b2 a3 b3 a6 ..
    lo = _mm256_permute2f128_ps(x, y, 0x20);
    hi = _mm256_permute2f128_ps(x, y, 0x31);
  }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
  using ivec = __m256i;
  static ivec iset1(int32_t x) { return _mm256_set1_epi32(x); }
  static ivec iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static ivec iadd(ivec a, ivec b) { return _mm256_add_epi32(a, b); }
  static ivec iloadu(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static ivec imul(ivec a, int32_t b) { return _mm256_mullo_epi32(a, _mm256_set1_epi32(b)); }
  static void imask_storeu(int32_t* p, mask m, ivec v) {
    if (all(m))
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
    else
      _mm256_maskstore_epi32(reinterpret_cast<int*>(p), m, v);
  }
  static mask take(vec v, vec best, mask m) {
    const __m256 t = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_and_si256(_mm256_castps_si256(t), m);
  }
  static vec select(mask m, vec a, vec b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
  static ivec iselect(mask m, ivec a, ivec b) { return _mm256_blendv_epi8(b, a, m); }
  static mask lanes(int a, int b) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(b), idx),
                            _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(a - 1)));
  }
  // ---- bf16 pairs (kernels.hpp, "bf16"), emulated: see avx512_traits.hpp ----
  using pvec = __m256i;
  static pvec pload(const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static pvec pmaskz_load(mask m, const uint32_t* p) { return _mm256_maskload_epi32(reinterpret_cast<const int*>(p), m); }
  static pvec pbroadcast(const uint32_t* p) { return _mm256_set1_epi32(static_cast<int32_t>(*p)); }
  static void pstore(uint32_t* p, pvec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static void pmask_store(uint32_t* p, mask m, pvec v) { _mm256_maskstore_epi32(reinterpret_cast<int*>(p), m, v); }
  static __m256i bf16_high(vec x) {
    const __m256i u = _mm256_castps_si256(x), hi_mask = _mm256_set1_epi32(static_cast<int32_t>(0xffff0000u));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), hi_mask);
    const __m256i denormal = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)), _mm256_setzero_si256());
    r = _mm256_blendv_epi8(r, _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int32_t>(0x80000000u))), denormal);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), hi_mask), nan);
  }
  static pvec pair(vec lo, vec hi) { return _mm256_or_si256(_mm256_srli_epi32(bf16_high(lo), 16), bf16_high(hi)); }
  static pvec pair_adjacent(vec v0, vec v1) {
    // packus works per 128-bit half: (v0 lo4, v1 lo4 | v0 hi4, v1 hi4) as 16-bit words; reorder the quarters.
    const __m256i w = _mm256_packus_epi32(_mm256_srli_epi32(bf16_high(v0), 16), _mm256_srli_epi32(bf16_high(v1), 16));
    return _mm256_permute4x64_epi64(w, 0xd8);
  }
  static vec dp(vec acc, pvec a, pvec b) {
    const __m256i hi = _mm256_set1_epi32(static_cast<int32_t>(0xffff0000u));
    const vec a1 = _mm256_castsi256_ps(_mm256_and_si256(a, hi)), b1 = _mm256_castsi256_ps(_mm256_and_si256(b, hi));
    const vec a0 = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), b0 = _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
    return _mm256_fmadd_ps(a0, b0, _mm256_fmadd_ps(a1, b1, acc));
  }
  struct FlushScope {
    unsigned saved = _mm_getcsr();
    FlushScope() { _mm_setcsr(saved | 0x8040u); }
    ~FlushScope() { _mm_setcsr(saved); }
    FlushScope(const FlushScope&) = delete;
    FlushScope& operator=(const FlushScope&) = delete;
  };
};
}  // namespace stride::kernels::avx2

#define STRIDE_KERNEL_NS avx2
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace stride::kernels {
const KernelTable& avx2_table() { return avx2::kTable; }
}  // namespace stride::kernels
