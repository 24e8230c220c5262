#pragma once
// Shape of a tensor: up to four int64 sizes, NCHW for images and (N, F) for feature vectors.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace stride {

struct Shape {
  static constexpr int max_rank = 4;
  std::array<int64_t, max_rank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> sizes);

  int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims[static_cast<size_t>(i)]; }
  // The product of the sizes; throws ShapeError when it does not fit in int64 or a size is negative.
  int64_t numel() const;
  // Size of everything after the batch dimension (C*H*W, or F), checked like numel().
  int64_t per_sample() const;

  // Named accessors for NCHW; valid for rank 4 (n() for any rank >= 1).
  int64_t n() const { return dims[0]; }
  int64_t c() const { return dims[1]; }
  int64_t h() const { return dims[2]; }
  int64_t w() const { return dims[3]; }

  // The same shape with a different batch size.
  Shape with_batch(int64_t n) const;

  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

  // "(N=128, C=3, H=32, W=32)" for rank 4, "(C=3, H=32, W=32)" for rank 3 (one sample), "(N=128, F=10)" for
  // rank 2, "(3000)" for rank 1.
  std::string str() const;
};

}  // namespace stride
