#include "framework/core/rng.hpp"

#include <cmath>

namespace stride {

std::array<uint32_t, 4> philox4x32(uint64_t key, std::array<uint32_t, 4> ctr) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr[0];
    uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return ctr;
}

uint32_t layer_purpose(std::string_view name) {
  uint32_t h = 2166136261u;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 16777619u;
  }
  return h | 0x80000000u;
}

uint32_t RandomStream::word(uint64_t i) const {
  // Four words per counter value; i < 2^34 keeps the block index within the 32-bit counter word.
  return block(i >> 2)[i & 3];
}

std::array<uint32_t, 4> RandomStream::block(uint64_t b) const {
  return philox4x32(seed_, {purpose_, a_, b_, static_cast<uint32_t>(b)});
}

float RandomStream::normal(uint64_t i) const {
  // u1 in (0, 1] so the log is finite.
  double u1 = (static_cast<double>(word(2 * i)) + 1.0) * (1.0 / 4294967296.0);
  double u2 = static_cast<double>(word(2 * i + 1)) * (1.0 / 4294967296.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

}  // namespace stride
