// The portable path for CPUs without AVX2 + FMA: one lane, std::fma (correctly rounded, so the same bits as
// the vector paths' FMA instructions), a 4 x 4 tile. Slow; it exists so results never depend on the CPU.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "framework/core/bf16.hpp"
#include "framework/core/kernels/kernels.hpp"

namespace stride::kernels::generic {
struct V {
  using vec = float;
  using mask = bool;  // whether lane 0 is in
  static constexpr Isa isa = Isa::generic;
  static constexpr int L = 1;
  static constexpr int MR = 4, NV = 4;
  static constexpr int WMR = 4, WNV = 4;
  static constexpr int NACC = 8;
  static vec zero() { return 0.0f; }
  static vec set1(float x) { return x; }
  static vec broadcast(const float* p) { return *p; }
  static vec loadu(const float* p) { return *p; }
  static vec maskz_loadu(mask m, const float* p) { return m ? *p : 0.0f; }
  static void storeu(float* p, vec v) { *p = v; }
  static void mask_storeu(float* p, mask m, vec v) {
    if (m) *p = v;
  }
  static void t8x8(const float* src, int64_t lds, float* dst, int64_t ldt) {
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 8; ++k) dst[j * ldt + k] = src[k * lds + j];
  }
  static void t8x8_rows(const float* const* rows, int64_t j0, float* dst, int64_t ldt) {
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 8; ++k) dst[j * ldt + k] = rows[k][j0 + j];
  }
  static vec fmadd(vec a, vec b, vec c) { return std::fma(a, b, c); }
  static mask lanes(int a, int b) { return a <= 0 && b > 0; }
  static vec even(vec lo, vec /*hi*/) { return lo; }
  static vec odd(vec /*lo*/, vec hi) { return hi; }
  static void spread(vec v, vec& lo, vec& hi) {
    lo = v;
    hi = -0.0f;
  }
  static void zip(vec a, vec b, vec& lo, vec& hi) {
    lo = a;
    hi = b;
  }
  static vec add(vec a, vec b) { return a + b; }
  static vec div(vec a, vec b) { return a / b; }
  using ivec = int32_t;
  static ivec iset1(int32_t x) { return x; }
  static ivec iota() { return 0; }
  static ivec iadd(ivec a, ivec b) { return a + b; }
  static ivec iloadu(const int32_t* p) { return *p; }
  static ivec imul(ivec a, int32_t b) { return a * b; }
  static void imask_storeu(int32_t* p, mask m, ivec v) {
    if (m) *p = v;
  }
  static mask take(vec v, vec best, mask m) { return m && (v > best || v != v); }
  static vec select(mask m, vec a, vec b) { return m ? a : b; }
  static ivec iselect(mask m, ivec a, ivec b) { return m ? a : b; }
  // ---- bf16 pairs: bf16.hpp's scalar definitions (explicit flushes, so no MXCSR state is needed) ----
  using pvec = uint32_t;
  static pvec pload(const uint32_t* p) { return *p; }
  static pvec pmaskz_load(mask m, const uint32_t* p) { return m ? *p : 0u; }
  static pvec pbroadcast(const uint32_t* p) { return *p; }
  static void pstore(uint32_t* p, pvec v) { *p = v; }
  static void pmask_store(uint32_t* p, mask m, pvec v) {
    if (m) *p = v;
  }
  static pvec pair(vec lo, vec hi) { return bf16_pair(lo, hi); }
  static pvec pair_adjacent(vec v0, vec v1) { return bf16_pair(v0, v1); }
  static vec dp(vec acc, pvec a, pvec b) { return dpbf16_step(acc, a, b); }
  struct FlushScope {};
};
}  // namespace stride::kernels::generic

#define STRIDE_KERNEL_NS generic
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

namespace stride::kernels {
const KernelTable& generic_table() { return generic::kTable; }
}  // namespace stride::kernels
