#pragma once
// The vector kernels, one table of function pointers per instruction set (framework/core/cpu.hpp picks the
// table from cpuid feature bits or STRIDE_ISA). Layers call kernels() and never see an intrinsic.
//
// Bitwise equality across tables: every output element of a matrix product is ONE fused multiply-add chain,
// started from its initial value (0, a bias, or the value already in C) and running over the reduction index
// in ascending order. Tables differ only in how many outputs they compute side by side (register tile MR x NR,
// vector width) and in how they walk memory, never in the order or the rounding of any sum. Storing a partial
// float accumulator and reloading it is exact, so cache blocking of the reduction (KC) changes nothing either.
#include <cstdint>

#include "framework/core/cpu.hpp"

namespace stride::kernels {

// Where the FMA chain of each output element starts.
enum class Start : int {
  zero,        // 0
  row_bias,    // bias[row]
  col_bias,    // bias[column]
  accumulate,  // the value already in C (so C += A B)
};

// C (M x N, row stride ldc) = start + A (M x K) B (K x N).
// A is packed by KernelTable::pack_a. Row k of B starts at b + boff[k] when boff is set, else at b + k * ldb;
// its N values are contiguous. Single-threaded; callers split work over disjoint blocks of C.
struct RowsGemm {
  int64_t M = 0, N = 0, K = 0;
  const float* a_packed = nullptr;
  const float* b = nullptr;
  const int64_t* boff = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  Start init = Start::zero;
  const float* bias = nullptr;  // row_bias: M values; col_bias: N values
};

// The weight-gradient product with the reduction running over pixels:
// C (rows x cols, row stride ldc) = start + sum_j rows[i][j] * dyt[j * ldt + col], for j in [0, npix).
// rows[i] points at npix contiguous values (one row of a convolution's column source); dyt holds npix rows of
// at least round_up(cols, 16) floats (the output gradient transposed, zero-padded). init: zero or accumulate.
struct WgradGemm {
  int64_t rows = 0, cols = 0, npix = 0;
  const float* const* row_ptrs = nullptr;
  const float* dyt = nullptr;
  int64_t ldt = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  Start init = Start::zero;
};

// One image's column source for a convolution with vertical stride 1 (docs/design.md, "Kernels"):
// out[((c * S + s) * rows + i) * Q + q] = src[c][i - top][q * sw + s * dw - left], 0 outside the Hs x Ws plane,
// for c < C, s < S, i < rows, q < Q. Row (c, r, s) of the implicit im2col matrix is then the contiguous run
// starting at ((c * S + s) * rows + r * dh) * Q, for every output pixel p * Q + q at once.
struct ShiftedSource {
  const float* src = nullptr;
  int64_t C = 0, Hs = 0, Ws = 0;
  int64_t S = 1, dw = 1, sw = 1;
  int64_t top = 0, left = 0, rows = 0, Q = 0;
  float* out = nullptr;
};

// One image's explicit im2col for any stride: out[((c * R + r) * S + s) * P * Q + p * Q + q] =
// src[c][p * sh + r * dh - top][q * sw + s * dw - left], 0 outside the plane.
struct Im2col {
  const float* src = nullptr;
  int64_t C = 0, Hs = 0, Ws = 0;
  int64_t R = 1, S = 1, dh = 1, dw = 1, sh = 1, sw = 1;
  int64_t top = 0, left = 0, P = 0, Q = 0;
  float* out = nullptr;
};

struct KernelTable {
  Isa isa;
  int lanes;  // floats per vector register
  // Packs A (M x K, element (m, k) at src[m * rs + k * cs]) into M * K floats for rows_gemm.
  void (*pack_a)(const float* src, int64_t rs, int64_t cs, int64_t M, int64_t K, float* dst);
  void (*rows_gemm)(const RowsGemm& g);
  void (*wgrad_gemm)(const WgradGemm& g);
  void (*shifted_source)(const ShiftedSource& s);
  void (*im2col)(const Im2col& s);
  // dst[j * ldt + k] = src[k * lds + j] for k < K, j < J; dst[j * ldt + k] = 0 for K <= k < ldt.
  void (*transpose)(const float* src, int64_t lds, int64_t K, int64_t J, float* dst, int64_t ldt);
  // Runs `iterations` rounds of independent register-only FMAs; returns the FLOPs done.
  double (*fma_probe)(int64_t iterations);
};

// The table of the active path (active_isa()).
const KernelTable& kernels();
// The table of a given path, or nullptr when this CPU cannot run it.
const KernelTable* kernel_table(Isa isa);

// Floats of dyt per pixel that WgradGemm needs for `cols` columns, on every path.
inline int64_t wgrad_ldt(int64_t cols) { return (cols + 15) / 16 * 16; }

}  // namespace stride::kernels
