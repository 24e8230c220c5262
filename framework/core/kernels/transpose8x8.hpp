// An 8 x 8 float transpose in 256-bit registers, shared by the AVX2 and AVX-512 paths (both transpose dy in
// 8 x 8 blocks for the weight gradient). No include guard on purpose: it is included inside each path's own
// namespace (stride::kernels::avx2, ::avx512), after that file's target pragma, so each path gets its own copy
// compiled for its own instructions and the linker never merges the two.
//
// dst[j * ldt + k] = r_k[j] for j, k in [0, 8): the eight rows r0..r7 already loaded.
inline void transpose8x8_regs(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5, __m256 r6, __m256 r7,
                              float* dst, int64_t ldt) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ldt, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldt, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldt, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldt, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldt, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldt, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldt, _mm256_permute2f128_ps(u3, u7, 0x31));
}
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldt) {
  transpose8x8_regs(_mm256_loadu_ps(src), _mm256_loadu_ps(src + lds), _mm256_loadu_ps(src + 2 * lds),
                    _mm256_loadu_ps(src + 3 * lds), _mm256_loadu_ps(src + 4 * lds), _mm256_loadu_ps(src + 5 * lds),
                    _mm256_loadu_ps(src + 6 * lds), _mm256_loadu_ps(src + 7 * lds), dst, ldt);
}
// dst[j * ldt + k] = rows[k][j0 + j] for j, k in [0, 8): eight rows anywhere in memory.
inline void transpose8x8_rows(const float* const* rows, int64_t j0, float* dst, int64_t ldt) {
  transpose8x8_regs(_mm256_loadu_ps(rows[0] + j0), _mm256_loadu_ps(rows[1] + j0), _mm256_loadu_ps(rows[2] + j0),
                    _mm256_loadu_ps(rows[3] + j0), _mm256_loadu_ps(rows[4] + j0), _mm256_loadu_ps(rows[5] + j0),
                    _mm256_loadu_ps(rows[6] + j0), _mm256_loadu_ps(rows[7] + j0), dst, ldt);
}
