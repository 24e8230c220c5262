#pragma once
// Optimizers over the network's flat parameter buffer: SGD (momentum, Nesterov), Adam and AdamW, with the
// update rules of PyTorch 1.13's torch.optim.SGD / Adam / AdamW, computed in float in torch's operation
// order (see optimizer.cpp for the exact expressions).
//
// The network owns all learnable parameters in one flat buffer and their gradients in a second buffer of
// the same layout; each parameter is a contiguous range of it. The optimizer state ("slots": momentum
// buffers, Adam moments) has that same flat layout, so slot i of a parameter p is
// slot(i).subspan(p.offset, p.size), and a checkpoint stores it as /optimizer/<layer>/<param>/<slot name>.
// Restoring the slots and step_count() is all a resumed run needs to continue bit-identically.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace stride {

// One learnable parameter: a contiguous range [offset, offset + size) of the flat buffers.
struct OptimizerParam {
  std::string name;  // "<layer>/<param>", e.g. "conv1/weight"; unique
  int64_t offset = 0, size = 0;
  bool weight_decay = true;  // false for biases and batch-norm scale/shift (ParamSpec::weight_decay)
};

struct OptimizerOptions {
  std::string kind = "sgd";  // sgd | adam | adamw
  // SGD only. momentum 0 is plain SGD (no state); dampening is always 0, as in torch's default.
  double momentum = 0.9;
  bool nesterov = false;
  // sgd and adam: L2 penalty added to the gradient (g + wd * p); adamw: decoupled decay p *= 1 - lr * wd.
  double weight_decay = 0.0;
  // true (default): decay every parameter, which is what torch.optim does when handed model.parameters(),
  // so recipes ported from PyTorch behave the same. false: skip parameters whose weight_decay flag is false
  // (biases, batch-norm scale/shift), like a torch param group with weight_decay=0 for them.
  bool decay_all = true;
  // adam and adamw.
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class Optimizer {
 public:
  // Validates the options and the parameter ranges (in [0, total_size), non-overlapping, unique names);
  // throws ConfigError naming the field and the value found. Slots start zeroed, step_count() at 0.
  static std::unique_ptr<Optimizer> create(const OptimizerOptions& options, std::vector<OptimizerParam> params,
                                           int64_t total_size);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter range in `params` from `grads` (both total_size long) at learning rate
  // `lr`, then step_count() + 1. Elements outside every range are left alone. Throws ConfigError for a
  // negative or non-finite lr and ShapeError for buffers of the wrong size. Allocates nothing.
  void step(std::span<float> params, std::span<const float> grads, double lr);

  // Updates done so far (torch's state['step']); Adam's bias correction and SGD's first-step momentum
  // initialisation depend on it, so a checkpoint stores it next to the slots.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps);

  std::string kind() const { return options_.kind; }
  // sgd with momentum: {"momentum_buffer"}; plain sgd: {}; adam/adamw: {"exp_avg", "exp_avg_sq"} (torch's
  // state keys).
  const std::vector<std::string>& slot_names() const { return slot_names_; }
  // Slot i over the whole flat layout (total_size floats); writable so a checkpoint can restore it.
  std::span<float> slot(size_t i);
  std::span<const float> slot(size_t i) const;

  const std::vector<OptimizerParam>& params() const { return params_; }
  const OptimizerOptions& options() const { return options_; }
  int64_t total_size() const { return total_size_; }

 protected:
  // A fixed piece of one parameter range. Blocks are cut once, at creation, with a size that does not
  // depend on the thread count, so every element sees the same code path whatever the threads.
  struct Block {
    int64_t begin, end;
    bool decay;  // apply weight decay to this block
  };

  Optimizer(const OptimizerOptions& options, std::vector<OptimizerParam> params, int64_t total_size,
            std::vector<std::string> slot_names);
  // Updates the elements of one block; `step` is the 1-based index of this update.
  virtual void update_block(const Block& block, float* params, const float* grads, double lr, int64_t step) = 0;
  float* slot_data(size_t i) { return slots_[i].data(); }

 private:
  OptimizerOptions options_;
  std::vector<OptimizerParam> params_;
  int64_t total_size_ = 0;
  std::vector<std::string> slot_names_;
  std::vector<std::vector<float>> slots_;
  std::vector<Block> blocks_;
  int64_t step_count_ = 0;
};

}  // namespace stride
