#pragma once
// bf16 (bfloat16: fp32's sign, 8-bit exponent and top 7 mantissa bits) and the arithmetic of stride's bf16
// products, written once in plain C++ as the reference every kernel path must reproduce to the bit
// (docs/design.md, "bf16").
//
// Conversion from fp32 is what AVX512-BF16's vcvtneps2bf16 does (checked on all 2^32 inputs on AMD Zen 5):
// round to nearest even; fp32 denormals become a zero of the same sign; NaN stays NaN, made quiet.
//
// A bf16 dot-product step is what the Intel SDM's pseudo-code defines for vdpbf16ps (and what the AMD Zen 5
// hardware was measured to do, bitwise, on 19 million lanes of awkward inputs): for an fp32 accumulator and
// two bf16 pairs a = (a0, a1), b = (b0, b1) packed low half first in 32 bits,
//   t = ftz(fma(a1, b1, daz(acc)));  result = ftz(fma(a0, b0, t))
// the odd pair first, each step one fp32 fused multiply-add rounded to nearest even, denormal inputs read as
// zeros of their sign (DAZ) and denormal results written as zeros of their sign (FTZ, decided after
// rounding). A bf16 x bf16 product is exact, so the only roundings are those two additions.
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

namespace stride {

// Whether convolutions and linear layers compute in fp32, or with bf16 inputs and weights and fp32 sums.
enum class Precision { fp32, bf16 };
const char* precision_name(Precision p);
// Parses "fp32" or "bf16"; throws ConfigError naming `what` otherwise.
Precision parse_precision(const std::string& name, const std::string& what);

// fp32 -> bf16 bits, as vcvtneps2bf16.
constexpr uint16_t to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7f800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);                 // zero, denormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);       // NaN, quieted
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                          // ties to even
}
constexpr float from_bf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
// x rounded to bf16, as an fp32 value.
constexpr float round_bf16(float x) { return from_bf16(to_bf16(x)); }
// Two values as one bf16 pair (lo in the low half), the unit a bf16 dot-product step consumes.
constexpr uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | (static_cast<uint32_t>(to_bf16(hi)) << 16);
}

// A zero of x's sign when x is denormal (fp32 exponent bits all zero), else x.
inline float flush_denormal(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  return (u & 0x7f800000u) == 0 ? std::bit_cast<float>(u & 0x80000000u) : x;
}

// One vdpbf16ps lane: acc + a1 b1, then + a0 b0, as the header comment says.
inline float dpbf16_step(float acc, uint32_t a, uint32_t b) {
  const float a0 = flush_denormal(std::bit_cast<float>(a << 16)), a1 = flush_denormal(std::bit_cast<float>(a & 0xffff0000u));
  const float b0 = flush_denormal(std::bit_cast<float>(b << 16)), b1 = flush_denormal(std::bit_cast<float>(b & 0xffff0000u));
  const float t = flush_denormal(std::fma(a1, b1, flush_denormal(acc)));
  return flush_denormal(std::fma(a0, b0, t));
}

}  // namespace stride
