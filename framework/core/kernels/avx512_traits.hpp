// The AVX-512 vector traits shared by the AVX-512F path (avx512.cpp) and the AVX512-BF16 path
// (avx512bf16.cpp): included inside the path's namespace with STRIDE_HW_BF16 set to 0 or 1, which decides
// whether a bf16 dot-product step is the vdpbf16ps instruction or its exact emulation with two FMAs.
// No include guard on purpose (one copy per path namespace).
struct V {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr Isa isa = STRIDE_HW_BF16 ? Isa::avx512bf16 : Isa::avx512;
  static constexpr int L = 16;
  static constexpr int MR = 12, NV = 2;   // rows_gemm tile
  static constexpr int WMR = 12, WNV = 2;  // wgrad_gemm tile
  static constexpr int NACC = 24;         // independent chains of the peak probe
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float x) { return _mm512_set1_ps(x); }
  static vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static vec maskz_loadu(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void mask_storeu(float* p, mask m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
  // dst[j * ldt + k] = src[k * lds + j] for an 8 x 8 block.
  static void t8x8(const float* src, int64_t lds, float* dst, int64_t ldt) { transpose8x8(src, lds, dst, ldt); }
  // dst[j * ldt + k] = rows[k][j0 + j] for an 8 x 8 block of eight rows anywhere.
  static void t8x8_rows(const float* const* rows, int64_t j0, float* dst, int64_t ldt) {
    transpose8x8_rows(rows, j0, dst, ldt);
  }
  static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  // Lanes [a, b) of 16.
  static mask lanes(int a, int b) { return static_cast<mask>(((1u << b) - 1u) & ~((1u << a) - 1u)); }
  // The even lanes of (lo, hi) = p[0], p[2], ..., p[30].
  static vec even(vec lo, vec hi) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
  static vec odd(vec lo, vec hi) {
    const __m512i idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
  // v spread over the even lanes of (lo, hi), the odd lanes -0.0 (adding them changes nothing).
  static void spread(vec v, vec& lo, vec& hi) {
    const __m512 nz = _mm512_set1_ps(-0.0f);
    lo = _mm512_permutex2var_ps(v, _mm512_setr_epi32(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16), nz);
    hi = _mm512_permutex2var_ps(v, _mm512_setr_epi32(8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16), nz);
  }
  // a and b interleaved over (lo, hi): a0 b0 a1 b1 ...
  static void zip(vec a, vec b, vec& lo, vec& hi) {
    lo = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
    hi = _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
  }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  // Pooling: int32 index vectors, compare masks and selects.
  using ivec = __m512i;
  static ivec iset1(int32_t x) { return _mm512_set1_epi32(x); }
  static ivec iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static ivec iadd(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
  static ivec iloadu(const int32_t* p) { return _mm512_loadu_si512(p); }
  static ivec imul(ivec a, int32_t b) { return _mm512_mullo_epi32(a, _mm512_set1_epi32(b)); }
  static void imask_storeu(int32_t* p, mask m, ivec v) { _mm512_mask_storeu_epi32(p, m, v); }
  // v > best, or v is NaN (PyTorch's max-pool test), within m.
  static mask take(vec v, vec best, mask m) {
    return static_cast<mask>((_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) & m);
  }
  static vec select(mask m, vec a, vec b) { return _mm512_mask_blend_ps(m, b, a); }
  static ivec iselect(mask m, ivec a, ivec b) { return _mm512_mask_blend_epi32(m, b, a); }
  // ---- bf16 pairs (kernels.hpp, "bf16") ----
  using pvec = __m512i;
  static pvec pload(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static pvec pmaskz_load(mask m, const uint32_t* p) { return _mm512_maskz_loadu_epi32(m, p); }
  static pvec pbroadcast(const uint32_t* p) { return _mm512_set1_epi32(static_cast<int32_t>(*p)); }
  static void pstore(uint32_t* p, pvec v) { _mm512_storeu_si512(p, v); }
  static void pmask_store(uint32_t* p, mask m, pvec v) { _mm512_mask_storeu_epi32(p, m, v); }
  // Per lane: the bf16 bits of x (bf16.hpp's to_bf16) in the high half, zeros in the low half.
  static __m512i bf16_high(vec x) {
    const __m512i u = _mm512_castps_si512(x), hi_mask = _mm512_set1_epi32(static_cast<int32_t>(0xffff0000u));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), hi_mask);
    const __mmask16 denormal = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_and_epi32(r, denormal, u, _mm512_set1_epi32(static_cast<int32_t>(0x80000000u)));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_and_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi_mask);
  }
  // Lane j: bf16_pair(lo[j], hi[j]).
  static pvec pair(vec lo, vec hi) { return _mm512_or_si512(_mm512_srli_epi32(bf16_high(lo), 16), bf16_high(hi)); }
  // Lane j: bf16_pair of elements 2j and 2j + 1 of the 32 values (v0, v1).
  static pvec pair_adjacent(vec v0, vec v1) {
    const __m256i a = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_high(v0), 16));
    const __m256i b = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_high(v1), 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  }
#if STRIDE_HW_BF16
  // vdpbf16ps itself (measured bitwise equal to bf16.hpp's dpbf16_step on this instruction's hosts).
  static vec dp(vec acc, pvec a, pvec b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
  struct FlushScope {};
#else
  // vdpbf16ps emulated: a bf16 is the high half of an fp32, so each pair splits into two exact fp32 values
  // (a shift and a mask), and the two steps are two FMAs, odd pair first. FlushScope makes the FMAs read
  // denormals as zeros and flush denormal results (MXCSR DAZ and FTZ, tininess after rounding on x86), as
  // the instruction does.
  static vec dp(vec acc, pvec a, pvec b) {
    const __m512i hi = _mm512_set1_epi32(static_cast<int32_t>(0xffff0000u));
    const vec a1 = _mm512_castsi512_ps(_mm512_and_si512(a, hi)), b1 = _mm512_castsi512_ps(_mm512_and_si512(b, hi));
    const vec a0 = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), b0 = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
    return _mm512_fmadd_ps(a0, b0, _mm512_fmadd_ps(a1, b1, acc));
  }
  struct FlushScope {
    unsigned saved = _mm_getcsr();
    FlushScope() { _mm_setcsr(saved | 0x8040u); }
    ~FlushScope() { _mm_setcsr(saved); }
    FlushScope(const FlushScope&) = delete;
    FlushScope& operator=(const FlushScope&) = delete;
  };
#endif
};
