#include "framework/memory_plan.hpp"

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride {
namespace {

// a * b * c, or -1 on overflow (or when an operand already is -1).
int64_t product(int64_t a, int64_t b, int64_t c = 1) {
  const auto ab = mul_sizes(a, b);
  const auto abc = ab ? mul_sizes(*ab, c) : std::nullopt;
  return abc ? *abc : -1;
}

// Floats of every layer output for one sample, and of the input.
int64_t activation_floats_per_sample(const Network& net) {
  int64_t sum = net.input_shape().numel();
  for (const auto& row : net.summary()) {
    const auto next = add_sizes(sum, row.output.per_sample());
    if (!next) return -1;
    sum = *next;
  }
  return sum;
}

constexpr int64_t kFloat = sizeof(float);

}  // namespace

int64_t MemoryPlan::total() const {
  int64_t sum = 0;
  for (int64_t part : {params, grads, state, optimizer, activations, data}) {
    const auto next = add_sizes(sum, part);
    if (!next) return -1;
    sum = *next;
  }
  return sum;
}

std::string MemoryPlan::describe() const {
  std::string out;
  auto part = [&](const char* name, int64_t bytes) {
    if (bytes == 0) return;
    out += (out.empty() ? "" : " + ") + std::string(name) + " " + (bytes < 0 ? "(overflows)" : human_bytes(bytes));
  };
  part("params", params);
  part("grads", grads);
  part("state", state);
  part("optimizer", optimizer);
  part("activations", activations);
  part("data", data);
  return out;
}

int64_t optimizer_slot_count(const OptimizerOptions& options) {
  if (options.kind == "adam" || options.kind == "adamw") return 2;
  return options.momentum != 0.0 ? 1 : 0;
}

MemoryPlan plan_training(const Network& net, int64_t batch, int64_t optimizer_slots, int64_t data_bytes) {
  MemoryPlan p;
  p.params = product(net.learnable_count(), kFloat);
  p.grads = p.params;
  p.state = product(net.state_count(), kFloat);
  p.optimizer = product(net.learnable_count(), optimizer_slots, kFloat);
  const int64_t per_sample = activation_floats_per_sample(net);
  // Output + gradient + scratch per layer, and two loader batches of the input.
  const int64_t layers = per_sample < 0 ? -1 : product(per_sample, 3, kFloat);
  const int64_t inputs = product(net.input_shape().numel(), 2, kFloat);
  const auto per_batch = layers < 0 || inputs < 0 ? std::nullopt : add_sizes(layers, inputs);
  p.activations = per_batch ? product(*per_batch, batch) : -1;
  p.data = data_bytes;
  return p;
}

MemoryPlan plan_inference(const Network& net, int64_t batch, int64_t data_bytes) {
  MemoryPlan p;
  p.params = product(net.learnable_count(), kFloat);
  p.state = product(net.state_count(), kFloat);
  const int64_t per_sample = activation_floats_per_sample(net);
  p.activations = per_sample < 0 ? -1 : product(per_sample, 2 * kFloat, batch);
  p.data = data_bytes;
  return p;
}

void check_plan(const MemoryPlan& plan, const std::string& what) {
  const int64_t total = plan.total();
  const int64_t limit = memory_limit();
  if (total >= 0 && total <= limit) return;
  throw ResourceError(what + " needs " + (total < 0 ? std::string("more bytes than int64 counts")
                                                    : std::to_string(total) + " bytes (" + human_bytes(total) + ")") +
                      " = " + plan.describe() + ", over the --max-memory limit of " + std::to_string(limit) +
                      " bytes (" + human_bytes(limit) + ")");
}

}  // namespace stride
