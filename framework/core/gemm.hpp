#pragma once
// Single-precision GEMM on row-major matrices: C = alpha * op(A) * op(B) + beta * C, with op(A) M x K and
// op(B) K x N. Backed by OpenBLAS running single-threaded: parallelism comes from TBB tasks that each call
// gemm on their own block, so the result of every call is independent of the thread count.
#include <cstdint>

namespace stride {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Makes OpenBLAS single-threaded (idempotent; gemm() calls it on first use).
void blas_use_one_thread();

}  // namespace stride
