#include "framework/core/tensor.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "framework/core/errors.hpp"

namespace stride {
namespace {
constexpr size_t kAlignment = 64;

float* aligned_alloc_floats(int64_t count, const Shape& shape) {
  constexpr int64_t kMaxCount = (INT64_MAX - static_cast<int64_t>(kAlignment)) / static_cast<int64_t>(sizeof(float));
  if (count > kMaxCount) throw ShapeError("tensor: " + shape.str() + " is too large to address in bytes");
  size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float);
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  // Named, so an allocation that slipped past the memory plan still says what it was for.
  if (!p)
    throw ResourceError("tensor " + shape.str() + ": cannot allocate " + std::to_string(bytes) +
                        " bytes (out of memory)");
  std::memset(p, 0, bytes);
  return static_cast<float*>(p);
}
}  // namespace

void Tensor::AlignedFree::operator()(float* p) const { std::free(p); }

Tensor::Tensor(const Shape& shape) { resize(shape); }

Tensor::Tensor(const Shape& shape, float value) {
  resize(shape);
  fill(value);
}

Tensor::Tensor(const Tensor& other) {
  resize(other.shape_);
  if (numel() > 0) std::memcpy(data(), other.data(), static_cast<size_t>(numel()) * sizeof(float));
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) {
    resize(other.shape_);
    if (numel() > 0) std::memcpy(data(), other.data(), static_cast<size_t>(numel()) * sizeof(float));
  }
  return *this;
}

void Tensor::resize(const Shape& shape) {
  for (int i = 0; i < shape.rank; ++i)
    if (shape[i] < 0) throw ShapeError("tensor: negative size in shape " + shape.str());
  int64_t n = shape.numel();
  if (n > capacity_) {
    data_.reset(aligned_alloc_floats(n, shape));
    capacity_ = n;
  }
  shape_ = shape;
}

void Tensor::reshape(const Shape& shape) {
  if (shape.numel() != numel())
    throw ShapeError("tensor: cannot reshape " + shape_.str() + " to " + shape.str() +
                     " (element counts differ)");
  shape_ = shape;
}

void Tensor::fill(float value) { std::fill_n(data(), numel(), value); }

void check_shape(std::string_view layer, std::string_view what, const Shape& expected, const Shape& actual) {
  if (expected != actual)
    throw ShapeError(std::string(layer) + ": expected " + std::string(what) + " " + expected.str() + ", got " +
                     actual.str());
}

}  // namespace stride
