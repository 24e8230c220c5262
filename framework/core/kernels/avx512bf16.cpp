// The AVX512-BF16 path: the AVX-512 path's kernels (same traits, same tiles, same fp32 bits), with each bf16
// dot-product step the vdpbf16ps instruction instead of its two-FMA emulation. Chosen by cpuid
// (CPUID.(EAX=7,ECX=1):EAX bit 5) on the AMD Zen 4/5 and Intel Cooper Lake / Sapphire Rapids kinds.
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
#pragma clang attribute push(__attribute__((target("avx512f,avx512bf16,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
// GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized on the shift and convert intrinsics (their
// _mm512_undefined_* operands; GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bf16,avx2,fma")
#endif

namespace stride::kernels::avx512bf16 {
#include "framework/core/kernels/transpose8x8.hpp"

#define STRIDE_HW_BF16 1
#include "framework/core/kernels/avx512_traits.hpp"
#undef STRIDE_HW_BF16
}  // namespace stride::kernels::avx512bf16

#define STRIDE_KERNEL_NS avx512bf16
#include "framework/core/kernels/impl.hpp"
#undef STRIDE_KERNEL_NS

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace stride::kernels {
const KernelTable& avx512bf16_table() { return avx512bf16::kTable; }
}  // namespace stride::kernels
