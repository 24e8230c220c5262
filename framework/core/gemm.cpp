#include "framework/core/gemm.hpp"

#include <vector>

namespace stride {

void pack_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* dst) {
  kernels::kernels().pack_a(A, trans_a ? 1 : lda, trans_a ? lda : 1, M, K, dst);
}

void gemm_packed(bool trans_b, int64_t M, int64_t N, int64_t K, const float* a_packed, const float* B, int64_t ldb,
                 float* C, int64_t ldc, Start init, const float* bias) {
  if (M <= 0 || N <= 0) return;
  const kernels::KernelTable& k = kernels::kernels();
  // A per-thread buffer: grown to the largest call once, then reused (no allocation per call).
  thread_local std::vector<float> b_pack;
  kernels::RowsGemm g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a_packed = a_packed;
  if (trans_b) {  // rows of op(B) are columns of B: transpose them into contiguous rows first
    if (b_pack.size() < static_cast<size_t>(K * N)) b_pack.resize(static_cast<size_t>(K * N));
    k.transpose(B, ldb, N, K, b_pack.data(), N);
    g.b = b_pack.data();
    g.ldb = N;
  } else {
    g.b = B;
    g.ldb = ldb;
  }
  g.c = C;
  g.ldc = ldc;
  g.init = init;
  g.bias = bias;
  k.rows_gemm(g);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc, Start init, const float* bias) {
  if (M <= 0 || N <= 0) return;
  thread_local std::vector<float> a_pack;
  if (a_pack.size() < static_cast<size_t>(M * K)) a_pack.resize(static_cast<size_t>(M * K));
  pack_a(trans_a, M, K, A, lda, a_pack.data());
  gemm_packed(trans_b, M, N, K, a_pack.data(), B, ldb, C, ldc, init, bias);
}

}  // namespace stride
