#include "framework/numeric_check.hpp"

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>

#include "framework/core/limits.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

bool all_finite(std::span<const float> values) {
  // NaN and infinity are the floats whose exponent bits are all set: an integer test, OR-ed without a branch,
  // so it vectorizes (a float sum would be one serial chain of adds).
  // Blocks over the threads: once per step over every gradient, and serial it was the largest serial
  // stretch of lenet5's step (431,080 gradients) in the many-core projection. A yes/no answer: any split works.
  std::atomic<bool> bad{false};
  parallel_for(static_cast<int64_t>(values.size()), int64_t{1} << 15, [&](int64_t b, int64_t e) {
    uint32_t any = 0;
    for (int64_t i = b; i < e; ++i)
      any |= static_cast<uint32_t>((std::bit_cast<uint32_t>(values[static_cast<size_t>(i)]) & 0x7f800000u) == 0x7f800000u);
    if (any) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

std::string first_non_finite_param(const Network& net) {
  if (!net.allocated()) return {};
  for (const auto& e : net.param_entries())
    if (!all_finite(net.values_of(e.name))) return e.name;
  return {};
}

std::string locate_non_finite(const Network& net, bool outputs, bool grads) {
  if (!net.allocated()) return {};
  const auto& entries = net.param_entries();
  const std::string bad = first_non_finite_param(net);
  if (!bad.empty()) {
    const std::string layer = bad.substr(0, bad.rfind('/'));
    return "the weights of layer '" + echo(layer) + "' (" + echo(bad) + ")";
  }
  Network& mut = const_cast<Network&>(net);  // layer(i) has no const overload; nothing is changed
  // Forward order for outputs: a NaN output first appears at the earliest layer that has one.
  if (outputs)
    for (size_t i = 0; i < net.layer_count(); ++i)
      if (!all_finite(net.layer_output(i).span())) return "the output of layer '" + echo(mut.layer(i).name()) + "'";
  // Backward order for gradients: backward runs from the loss, so the last layer with a bad gradient is where
  // it first appeared.
  if (grads)
    for (size_t i = net.layer_count(); i-- > 0;) {
      const std::string& name = mut.layer(i).name();
      for (const auto& e : entries) {
        if (e.role != ParamRole::learnable || e.name.compare(0, name.size() + 1, name + "/") != 0) continue;
        const auto g = net.grads().subspan(static_cast<size_t>(e.offset), static_cast<size_t>(e.size));
        if (!all_finite(g)) return "the gradient of layer '" + echo(name) + "' (" + echo(e.name) + ")";
      }
    }
  return {};
}

}  // namespace stride
