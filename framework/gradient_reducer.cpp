#include "framework/gradient_reducer.hpp"

#include <algorithm>

#include "framework/core/errors.hpp"

namespace stride {

MicroBatchRange contiguous_share(int64_t items, int64_t processes, int64_t index) {
  const int64_t base = items / processes, extra = items % processes;
  const int64_t first = index * base + std::min(index, extra);
  return {first, base + (index < extra ? 1 : 0)};
}

void LocalGradientReducer::reduce() {
  if (!sum_) throw Error("gradient reducer: reduce() without begin_sum()");
  sum_->reduce_locally(grads_);
  sum_ = nullptr;
}

void LocalGradientReducer::gather(std::span<const double> mine, std::span<double> all, int64_t width, int64_t items) {
  if (static_cast<int64_t>(mine.size()) != width * items || all.size() != mine.size())
    throw Error("gradient reducer: gather() rows of the wrong size");
  std::copy(mine.begin(), mine.end(), all.begin());
}

}  // namespace stride
