#pragma once
// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11). There is no generator state: every
// number is a pure function of (seed, purpose, a, b, index), so a resumed or re-partitioned run draws exactly
// the same numbers as an uninterrupted one, whatever the thread or rank count.
//
// Conventions for (purpose, a, b):
//   weight init    purpose = Purpose::init,     a = parameter index, b = 0,      index = element
//   shuffling      purpose = Purpose::shuffle,  a = epoch,           b = 0,      index = position
//   augmentation   purpose = Purpose::augment,  a = epoch,           b = sample, index = draw
//   dropout        purpose = layer_purpose(name), a = epoch,         b = sample, index = element
#include <array>
#include <cstdint>
#include <string_view>

namespace stride {

// Philox-4x32 with 10 rounds: four random 32-bit words for a 128-bit counter under a 64-bit key.
std::array<uint32_t, 4> philox4x32(uint64_t key, std::array<uint32_t, 4> counter);

enum class Purpose : uint32_t { init = 1, shuffle = 2, augment = 3, dropout = 4 };

// A stable purpose id for a named layer (FNV-1a of the name, high bit set so it never equals a fixed
// Purpose): adding a layer elsewhere never changes this layer's random numbers.
uint32_t layer_purpose(std::string_view layer_name);

class RandomStream {
 public:
  RandomStream(uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b) : seed_(seed), purpose_(purpose), a_(a), b_(b) {}
  RandomStream(uint64_t seed, Purpose purpose, uint32_t a, uint32_t b)
      : RandomStream(seed, static_cast<uint32_t>(purpose), a, b) {}

  // The i-th 32-bit word of the stream (i < 2^34).
  uint32_t word(uint64_t i) const;
  // Words 4b .. 4b+3 at the cost of one Philox call (for filling long runs such as dropout masks).
  std::array<uint32_t, 4> block(uint64_t b) const;
  static float to_uniform(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }
  // Uniform in [0, 1) with 24 random bits, from word(i).
  float uniform(uint64_t i) const { return to_uniform(word(i)); }
  // Uniform in [lo, hi), from word(i).
  float uniform(uint64_t i, float lo, float hi) const { return lo + (hi - lo) * uniform(i); }
  // Standard normal from words 2i and 2i+1 (Box-Muller, computed in double).
  float normal(uint64_t i) const;
  // Uniform integer in [0, n) from word(i) (Lemire's multiply-shift; bias below 2^-32 * n).
  uint32_t below(uint64_t i, uint32_t n) const {
    return static_cast<uint32_t>((static_cast<uint64_t>(word(i)) * n) >> 32);
  }

 private:
  uint64_t seed_;
  uint32_t purpose_, a_, b_;
};

}  // namespace stride
