#pragma once
// Which vector instructions the kernels use. Chosen once from the cpuid feature bits (never from a CPU model
// table), or forced with STRIDE_ISA=avx512bf16|avx512|avx2|generic. Every path computes every floating-point sum in the
// same order with the same fused multiply-adds, so results are bitwise identical whichever path runs
// (docs/design.md, "Kernels").
#include <string>

namespace stride {

// avx512bf16 runs the avx512 kernels with the vdpbf16ps instruction for bf16 products (which the others
// emulate exactly); fp32 results are the same on all four.
enum class Isa { generic, avx2, avx512, avx512bf16 };

const char* isa_name(Isa isa);

// What this CPU and OS support, best first: avx512bf16 needs avx512 and AVX512_BF16; avx512 needs AVX-512F
// with ZMM state enabled by the OS, avx2
// needs AVX2 and FMA with YMM state enabled; generic (plain C++ with correctly rounded std::fma) runs anywhere.
Isa best_supported_isa();
bool isa_supported(Isa isa);

// The path in use: set_isa's, else STRIDE_ISA's, else best_supported_isa(). Throws ConfigError when
// STRIDE_ISA names an unknown path or one this CPU lacks.
Isa active_isa();
// Forces a path (tests, benchmarks). Throws ConfigError when the CPU lacks it. Not thread-safe: call it
// between passes, never while kernels run.
void set_isa(Isa isa);
// Parses "avx512bf16", "avx512", "avx2" or "generic"; throws ConfigError naming `what` otherwise.
Isa parse_isa(const std::string& name, const std::string& what);

// One core's single-precision FMA peak for `isa` in GFLOP/s (2 FLOPs per lane per FMA), measured once per
// process with a register-only loop of independent FMAs (no memory traffic), best of a few short runs.
double fma_peak_gflops(Isa isa);
// One core's bf16 dot-product peak for `isa` (4 FLOPs per lane per vdpbf16ps step, emulated or not), measured
// the same way.
double bf16_peak_gflops(Isa isa);

}  // namespace stride
