#pragma once
// Single-precision matrix product on row-major matrices, on stride's own kernels (framework/core/kernels/):
// C (M x N) = init + op(A) op(B), with op(A) M x K and op(B) K x N. Every element of C is one FMA chain over
// k = 0 .. K-1 in order, started from its initial value, so the result is the same bits on every instruction
// set path and for any blocking. Single-threaded: callers split work over disjoint blocks of C (TBB tasks),
// so the result of every call is independent of the thread count.
#include <cstdint>

#include "framework/core/kernels/kernels.hpp"

namespace stride {

using kernels::Start;

// init: Start::zero (C = AB), Start::accumulate (C += AB, the chain starting from C), Start::row_bias /
// Start::col_bias (C = bias + AB, bias of M or N values).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc, Start init = Start::zero, const float* bias = nullptr);

// gemm in two parts, for products that share their left operand (column tiles of one block of rows): op(A)
// packed once (M * K floats at dst), then each product on the packed A. The same bits as gemm.
void pack_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* dst);
void gemm_packed(bool trans_b, int64_t M, int64_t N, int64_t K, const float* a_packed, const float* B, int64_t ldb,
                 float* C, int64_t ldc, Start init = Start::zero, const float* bias = nullptr);

}  // namespace stride
