#include "framework/core/shape.hpp"

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride {

Shape::Shape(std::initializer_list<int64_t> sizes) {
  if (sizes.size() > static_cast<size_t>(max_rank))
    throw ShapeError("shape: rank " + std::to_string(sizes.size()) + " exceeds the maximum of 4");
  for (int64_t s : sizes) dims[static_cast<size_t>(rank++)] = s;
}

namespace {
// The product of dims[first, rank), checked: a product that does not fit in int64 (or a negative size) is a
// ShapeError naming the shape, never a wrapped-around count that a later allocation would trust.
int64_t checked_product(const Shape& s, int first) {
  int64_t n = 1;
  for (int i = first; i < s.rank; ++i) {
    const auto next = mul_sizes(n, s[i]);
    if (!next)
      throw ShapeError("shape " + s.str() + ": " +
                       (s[i] < 0 ? std::string("negative size") : std::string("element count overflows int64")));
    n = *next;
  }
  return n;
}
}  // namespace

int64_t Shape::numel() const { return rank == 0 ? 0 : checked_product(*this, 0); }

int64_t Shape::per_sample() const { return checked_product(*this, 1); }

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
