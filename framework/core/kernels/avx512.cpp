// The AVX-512 path: 16 lanes, a 12 x 32 register tile for rows_gemm (24 of the 32 zmm registers accumulate),
// 8 x 32 for wgrad_gemm. Only the functions below are compiled for AVX-512 (target pragma after the standard
// headers), so nothing the linker might share with other code carries AVX-512 instructions.
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
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
// GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized on the shift and convert intrinsics (their
// _mm512_undefined_* operands; GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace stride::kernels::avx512 {
#include "framework/core/kernels/transpose8x8.hpp"

#define STRIDE_HW_BF16 0
#include "framework/core/kernels/avx512_traits.hpp"
#undef STRIDE_HW_BF16
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
