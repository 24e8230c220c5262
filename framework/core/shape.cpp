#include "framework/core/shape.hpp"

#include "framework/core/errors.hpp"

namespace stride {

Shape::Shape(std::initializer_list<int64_t> sizes) {
  if (sizes.size() > static_cast<size_t>(max_rank))
    throw ShapeError("shape: rank " + std::to_string(sizes.size()) + " exceeds the maximum of 4");
  for (int64_t s : sizes) dims[static_cast<size_t>(rank++)] = s;
}

int64_t Shape::numel() const {
  if (rank == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
  return n;
}

int64_t Shape::per_sample() const {
  int64_t n = 1;
  for (int i = 1; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
  return n;
}

Shape Shape::with_batch(int64_t n) const {
  Shape s = *this;
  s.dims[0] = n;
  return s;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
  return true;
}

std::string Shape::str() const {
  static const char* nchw[] = {"N", "C", "H", "W"};
  static const char* nf[] = {"N", "F"};
  static const char* chw[] = {"C", "H", "W"};  // one sample of an image batch
  std::string s = "(";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    if (rank == 4) s += std::string(nchw[i]) + "=";
    if (rank == 2) s += std::string(nf[i]) + "=";
    if (rank == 3) s += std::string(chw[i]) + "=";
    s += std::to_string(dims[static_cast<size_t>(i)]);
  }
  return s + ")";
}

}  // namespace stride
