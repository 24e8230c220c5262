#pragma once
// IDX files as bytes, for the reader tests: big-endian header words and a labels file.
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace stride::test {

inline void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

// The magic word, then each dimension.
inline std::vector<uint8_t> idx_header(uint32_t magic, std::initializer_list<uint32_t> dims) {
  std::vector<uint8_t> v;
  put_be32(v, magic);
  for (uint32_t d : dims) put_be32(v, d);
  return v;
}

// A labels file (magic 0x801) of n labels i % 10.
inline std::vector<uint8_t> idx_labels(uint32_t n) {
  std::vector<uint8_t> v = idx_header(0x801, {n});
  for (uint32_t i = 0; i < n; ++i) v.push_back(static_cast<uint8_t>(i % 10));
  return v;
}

}  // namespace stride::test
