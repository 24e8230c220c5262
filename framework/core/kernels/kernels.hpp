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
#include <vector>

#include "framework/core/cpu.hpp"

namespace stride::kernels {

// Where the FMA chain of each output element starts.
enum class Start : int {
  zero,        // 0
  row_bias,    // bias[row]
  col_bias,    // bias[column]
  accumulate,  // the value already in C (so C += A B)
};

// The rows of B a product runs for each (block of columns, reduction block) when row k of B is +0 outside
// its columns [begin[k], end[k]) (the zero border of a shifted source): a block of columns outside that range
// skips row k, whose steps would add a * (+0) to each of the block's chains. That changes no sum that is not
// itself zero (only the sign of a zero result, or a NaN from an infinite a); every other step of every chain
// runs as without the plan, in the same order. Built once per product shape by KernelTable::plan_live_rows
// (the blocks follow the path's register tile), then read by every rows_gemm or rows_gemm_bf16 of that shape.
struct LiveRows {
  Isa isa = Isa::generic;
  int64_t N = -1, K = -1;      // the product it was planned for (N = -1: none)
  std::vector<int32_t> start;  // per (column block, reduction block), in that order, then the end: where its
                               // rows begin in `rows`
  std::vector<int32_t> rows;   // offsets within the reduction block, ascending
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
  const LiveRows* live = nullptr;  // optional: the rows each block of columns runs (LiveRows), for this N and K
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

// Pooling over `planes` planes (N*C): x (planes, H, W) -> y (planes, P, Q) with an R x S window, strides and
// left/top padding; window (p, q) covers the rows and columns of the plane in [p sh - ph, p sh - ph + R) x
// [q sw - pw, q sw - pw + S), the caller clipping the rows: hb/he give each output row's first and end input
// row, the columns are clipped to the plane. divisor (P x Q) holds the average pool's divisors, first_col (Q)
// the first in-plane column of each window (max pool's index before any comparison).
struct Pool {
  int64_t planes = 0, H = 0, W = 0, P = 0, Q = 0, R = 0, S = 0, sh = 1, sw = 1, ph = 0, pw = 0;
  const int32_t* hb = nullptr;
  const int32_t* he = nullptr;
  const float* divisor = nullptr;
  const int32_t* first_col = nullptr;
};

// ---- bf16 (framework/core/bf16.hpp) ----------------------------------------------------------------------
// Operands of the bf16 products are bf16 PAIRS packed in 32 bits (low half first): pair k of a row holds the
// row's elements 2k and 2k + 1 of the reduction, as vdpbf16ps consumes them.
//
// C (M x N, row stride ldc) = start + A (M x 2K) B (2K x N), each output element a chain of K dpbf16 steps
// (bf16.hpp: pair k's odd product, then its even one, each one fp32 FMA, DAZ/FTZ) over k in ascending order.
// A is packed by pack_a_bf16; row k of B (N pairs, contiguous) starts at b + boff[k] when boff is set, else at
// b + k * ldb. Every path computes exactly these steps, so every path gives the same bits.
struct RowsGemmBf16 {
  int64_t M = 0, N = 0, K = 0;  // K: pairs
  const uint32_t* a_packed = nullptr;
  // Instead of a_packed: row m of A as K contiguous pairs at a_rows[m] (made by row_pairs_bf16), read in
  // place, so the weight gradient's column source needs no transposing pack.
  const uint32_t* const* a_rows = nullptr;
  const uint32_t* b = nullptr;
  const int64_t* boff = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  Start init = Start::zero;
  const float* bias = nullptr;  // row_bias: M values; col_bias: N values
  const LiveRows* live = nullptr;  // as RowsGemm's, over pair rows
};

// ---- The optimizers' updates (framework/optimizer.cpp) follow torch's float arithmetic operation by
// operation: torch rounds once where it fuses a multiply into an add (Tensor.add with alpha is vec::fmadd;
// addcmul's self + (value*t1)*t2 is contracted to an FMA in torch's AVX2 build) and rounds every other
// operation on its own (mul_, the division and eps of Adam's denominator, addcdiv_). The fused steps are
// explicit FMAs and the build's -ffp-contract=off keeps the compiler from fusing the rest. test_optimizer
// checks the bits against torch 1.13.
//
// One SGD step over n elements with torch.optim.SGD's roundings (dampening 0): d = g + wd p (one FMA, only
// with decay); with momentum, buf = first ? d : buf * momentum + d (a product and a sum, each rounded) and
// d = nesterov ? d + momentum buf (one FMA) : buf; then p = p - lr d (one FMA). Without momentum buf is not
// touched. Element-wise, so every path and every split gives the same bits (FMAs are correctly rounded).
struct SgdStep {
  float weight_decay = 0, momentum = 0, neg_lr = 0;
  bool decay = false, use_momentum = false, first = false, nesterov = false;
};

// One Adam / AdamW step over n elements with torch.optim.Adam's / AdamW's roundings: AdamW first p = p *
// (1 - lr wd), Adam g = g + wd p (one FMA); m = m * beta1 + (1 - beta1) g (the product rounded, then one FMA);
// v = v * beta2 + ((1 - beta2) g) g (two products rounded, then one FMA, as torch's build contracts addcmul);
// denom = sqrt(v) / sqrt(bc2) + eps; p = p + (-lr / bc1) m / denom (each operation rounded). The scalars are
// rounded to float by the caller.
struct AdamStep {
  enum class Decay { none, l2, decoupled };
  float l2 = 0;         // Adam's weight_decay (L2 on the gradient)
  float decoupled = 1;  // AdamW's 1 - lr*wd
  float beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0;
  float bias_correction2_sqrt = 1, eps = 0, neg_step_size = 0;
  Decay decay = Decay::none;
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
  // The adjoint of im2col with top = left = 0 onto a plane (C, Hs, Ws) that holds every column it reads:
  // dst[c][p sh + r dh][q sw + s dw] += col[...], in the order (c, r, s, p, q). s.src is not read.
  void (*col2im_add)(const Im2col& s, const float* col, float* dst);
  // dst[j * ldt + k] = src[k * lds + j] for k < K, j < J; dst[j * ldt + k] = 0 for K <= k < ldt.
  void (*transpose)(const float* src, int64_t lds, int64_t K, int64_t J, float* dst, int64_t ldt);
  // Sums in a fixed order on every path: element i of the run goes to acc[i % 16], each of the 16 partials a
  // chain of double additions in index order (callers add the 16 partials in a fixed order at the end).
  void (*sum16)(const float* x, int64_t n, double* acc);
  void (*sum16_sq)(const float* x, int64_t n, double shift, double* acc);  // acc[i % 16] += (x[i] - shift)^2
  // acc_dy[i % 16] += dy[i]; acc_dyx[i % 16] += dy[i] * ((x[i] - mean) * invstd)
  void (*sum16_dy)(const float* dy, const float* x, int64_t n, double mean, double invstd, double* acc_dy,
                   double* acc_dyx);
  // Element-wise, every operation rounded on its own (no FMA): y = (x - a) * b + c, and the batch-norm input
  // gradient dx = k * (dy - a - (x - mean) * invstd * b).
  void (*affine)(const float* x, float* y, int64_t n, float a, float b, float c);
  void (*bn_dx)(const float* dy, const float* x, float* dx, int64_t n, float k, float a, float b, float mean,
                float invstd);
  // Max pool: y = the window's maximum, argmax its index in the plane (h * W + w): the first maximum in row-major
  // window order, a NaN taking over as in PyTorch (v > best || v != v).
  void (*max_pool_forward)(const Pool& g, const float* x, float* y, int32_t* argmax);
  // Average pool: y = (sum of the window's in-plane elements in row-major order, from 0) / divisor.
  void (*avg_pool_forward)(const Pool& g, const float* x, float* y);
  // dx (overwritten) = sum over the windows containing each element of dy / divisor, added in the order of
  // output rows p, window rows, window columns, then output columns.
  void (*avg_pool_backward)(const Pool& g, const float* dy, float* dx);
  // ReLU: y = x < 0 ? 0 : x (NaN passes, as std::max(x, 0) in PyTorch); dx = y > 0 ? dy : 0.
  void (*relu_forward)(const float* x, float* y, int64_t n);
  void (*relu_backward)(const float* y, const float* dy, float* dx, int64_t n);
  // The exact gradient sum's conversions: the largest |x[i]| as float bits (NaN and infinity above every
  // finite value), and out[i] = the sum over k < count of sources[k][offset + i] * factor, each rounded to the
  // nearest int64, ties to even (factor a power of two, every |x * factor| < 2^62 and the sum in range).
  uint32_t (*max_abs_bits)(const float* x, int64_t n);
  void (*to_fixed)(const float* const* sources, int64_t count, int64_t offset, int64_t n, double factor, int64_t* out);
  // Runs `iterations` rounds of independent register-only FMAs; returns the FLOPs done.
  double (*fma_probe)(int64_t iterations);

  // ---- bf16 ----
  // out[j] = bf16_pair(lo[j], hi[j]) for j < n; hi == nullptr reads zeros.
  void (*pack_pairs)(const float* lo, const float* hi, int64_t n, uint32_t* out);
  // Packs A (M x K fp32, element (m, k) at rows[m][k * cs]) as bf16 pairs for rows_gemm_bf16: M * ceil(K/2)
  // pairs, an odd K's last pair completed with a zero.
  void (*pack_a_bf16)(const float* const* rows, int64_t cs, int64_t M, int64_t K, uint32_t* dst);
  // One row of n floats as ceil(n / 2) pairs of adjacent elements (an odd n's last pair completed by 0).
  void (*row_pairs_bf16)(const float* src, int64_t n, uint32_t* out);
  void (*rows_gemm_bf16)(const RowsGemmBf16& g);
  // shifted_source's and im2col's column sources as bf16 pairs over channels (channel 2c in the low half,
  // 2c + 1 in the high half, zeros past C): out[((c2 * S + s) * rows + i) * Q + q] and
  // out[((c2 * R + r) * S + s) * P * Q + p * Q + q] for c2 < ceil(C / 2). s.out is not used; tmp holds
  // 2 * rows * Q (shifted) or 2 * P * Q (im2col) floats.
  void (*shifted_source_bf16)(const ShiftedSource& s, uint32_t* out, float* tmp);
  void (*im2col_bf16)(const Im2col& s, uint32_t* out, float* tmp);
  // dst[j * ldt + k] = bf16_pair(src[k * lds + 2j], src[k * lds + 2j + 1]) for k < K, j < ceil(J / 2) (a
  // column past J reads 0); dst[j * ldt + k] = 0 for K <= k < ldt.
  void (*transpose_pairs)(const float* src, int64_t lds, int64_t K, int64_t J, uint32_t* dst, int64_t ldt);
  // Runs `iterations` rounds of independent register-only bf16 dot-product steps; returns the FLOPs done
  // (4 per lane per step, as vdpbf16ps counts).
  double (*dpbf16_probe)(int64_t iterations);

  // pack_a in pieces, so a pack can be split over threads: the number of row panels of an M-row A, and
  // columns [k0, k1) of panel p written where pack_a writes them (every (p, k) once: the same bytes).
  int64_t (*a_panels)(int64_t M);
  void (*pack_a_part)(const float* src, int64_t rs, int64_t cs, int64_t M, int64_t K, int64_t p, int64_t k0,
                      int64_t k1, float* dst);
  // transpose with the K source rows anywhere: dst[j * ldt + k] = rows[k][j] for k < K, j < J, and 0 for
  // K <= k < ldt. Whole 8 x 8 blocks run as vector transposes (callers pad K to a multiple of 8 with a row of
  // zeros to keep the scalar tail out).
  void (*transpose_rows)(const float* const* rows, int64_t K, int64_t J, float* dst, int64_t ldt);
  // LiveRows for an N x K product on this path, from each row's live columns [begin[k], end[k]).
  void (*plan_live_rows)(const int32_t* begin, const int32_t* end, int64_t N, int64_t K, LiveRows& out);
  // The optimizers' updates (SgdStep, AdamStep above): p and the optimizer's state updated in place.
  void (*sgd_step)(float* p, const float* g, float* buf, int64_t n, const SgdStep& s);
  void (*adam_step)(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s);
};

// The table of the active path (active_isa()).
const KernelTable& kernels();
// The table of a given path, or nullptr when this CPU cannot run it.
const KernelTable* kernel_table(Isa isa);

// Adds the 16 partial sums of sum16 in a fixed order (a pairwise tree).
inline double reduce16(const double* acc) {
  double t[8];
  for (int i = 0; i < 8; ++i) t[i] = acc[i] + acc[i + 8];
  for (int i = 0; i < 4; ++i) t[i] = t[i] + t[i + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

// Floats of dyt per pixel that WgradGemm needs for `cols` columns, on every path.
inline int64_t wgrad_ldt(int64_t cols) { return (cols + 15) / 16 * 16; }

}  // namespace stride::kernels
