// The AVX2 + FMA path: 8 lanes, a 6 x 16 register tile for rows_gemm and wgrad_gemm (12 of the 16 ymm
// registers accumulate). Same loops and FMA chains as the AVX-512 path (impl.hpp), so the same bits.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include <immintrin.h>

#include "framework/core/kernels/kernels.hpp"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace stride::kernels::avx2 {
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
  static void mask_storeu(float* p, mask m, vec v) { _mm256_maskstore_ps(p, m, v); }
  static vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static mask lanes(int a, int b) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(b), idx),
                            _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(a - 1)));
  }
};
}  // namespace stride::kernels::avx2

#define STRIDE_KERNEL_NS avx2
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

#pragma GCC pop_options

namespace stride::kernels {
const KernelTable& avx2_table() { return avx2::kTable; }
}  // namespace stride::kernels
