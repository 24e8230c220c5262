#include "layers/add.hpp"

#include <cstring>

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

std::unique_ptr<Layer> Add::from_config(const LayerConfig& c) {
  c.finish();
  return std::make_unique<Add>(c.name());
}

void Add::check_inputs(const Shape& a, const Shape& b) const {
  if (a != b) throw ShapeError(name() + ": expected two inputs of the same shape, got " + a.str() + " and " + b.str());
}

// a, b: any shape -> y: same shape
void Add::forward2(const Tensor& a, const Tensor& b, Tensor& y, const RunContext&) {
  check_inputs(a.shape(), b.shape());
  y.resize(a.shape());
  const float* ap = a.data();
  const float* bp = b.data();
  float* yp = y.data();
  parallel_for(a.numel(), 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) yp[i] = ap[i] + bp[i];
  });
}

// dy: any shape -> da, db: same shape (each a copy of dy)
void Add::backward2(const Tensor& dy, Tensor* da, Tensor* db, const RunContext&) {
  const auto bytes = static_cast<size_t>(dy.numel()) * sizeof(float);
  for (Tensor* d : {da, db}) {
    if (!d) continue;
    d->resize(dy.shape());
    if (bytes == 0 || d->data() == dy.data()) continue;
    // A copy in blocks over the threads (serial, it held resnet8's step in the many-core projection).
    float* dst = d->data();
    const float* src = dy.data();
    parallel_for(dy.numel(), 16384, [&](int64_t i0, int64_t i1) {
      std::memcpy(dst + i0, src + i0, static_cast<size_t>(i1 - i0) * sizeof(float));
    });
  }
}

}  // namespace stride
