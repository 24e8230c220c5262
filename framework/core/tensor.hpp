#pragma once
// The one owning tensor type: contiguous float32, 64-byte aligned, NCHW, int64 sizes.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "framework/core/shape.hpp"

namespace stride {

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape);  // zero-filled
  Tensor(const Shape& shape, float value);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::span<float> span() { return {data_.get(), static_cast<size_t>(numel())}; }
  std::span<const float> span() const { return {data_.get(), static_cast<size_t>(numel())}; }

  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }
  // Element (n, c, h, w) of a rank-4 tensor.
  float& at(int64_t n, int64_t c, int64_t h, int64_t w) {
    return data_.get()[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }
  float at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data_.get()[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }

  // Changes the shape, reallocating only when the new size exceeds the capacity, so a buffer that is
  // resized once per batch shape never allocates in the training loop. Contents are unspecified after a
  // resize that changes numel (zero-filled when it allocates).
  void resize(const Shape& shape);
  // Same storage, new shape; numel must not change.
  void reshape(const Shape& shape);
  void fill(float value);
  void zero() { fill(0.0f); }

 private:
  struct AlignedFree {
    void operator()(float* p) const;
  };
  Shape shape_;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], AlignedFree> data_;
};

// Throws ShapeError "<layer>: expected <what> <expected>, got <actual>" when the shapes differ.
void check_shape(std::string_view layer, std::string_view what, const Shape& expected, const Shape& actual);

}  // namespace stride
