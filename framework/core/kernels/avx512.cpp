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

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace stride::kernels::avx512 {
struct V {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr Isa isa = Isa::avx512;
  static constexpr int L = 16;
  static constexpr int MR = 12, NV = 2;   // rows_gemm tile
  static constexpr int WMR = 8, WNV = 2;  // wgrad_gemm tile
  static constexpr int NACC = 24;         // independent chains of the peak probe
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float x) { return _mm512_set1_ps(x); }
  static vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static vec maskz_loadu(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void mask_storeu(float* p, mask m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
  static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  // Lanes [a, b) of 16.
  static mask lanes(int a, int b) { return static_cast<mask>(((1u << b) - 1u) & ~((1u << a) - 1u)); }
};
}  // namespace stride::kernels::avx512

#define STRIDE_KERNEL_NS avx512
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

#pragma GCC pop_options

namespace stride::kernels {
const KernelTable& avx512_table() { return avx512::kTable; }
}  // namespace stride::kernels
