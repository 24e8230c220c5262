#include "framework/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/parallel.hpp"

// The update rules reproduce torch's float arithmetic operation by operation; they run as kernels
// (kernels::SgdStep, kernels::AdamStep in framework/core/kernels/), compiled for each instruction set path.
// This file holds the options, the state and the per-step scalars.

namespace stride {
namespace {

// Elements per block of the update loop: large enough to amortize a task, small enough to spread a
// 100k-parameter network over a few threads. A constant, so blocks never depend on the thread count.
constexpr int64_t kBlockSize = 8192;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError("optimizer: " + message);
}

// ---- SGD ---------------------------------------------------------------------------------------------------
// torch.optim.SGD (dampening 0): d = g + wd*p; buf = first step ? d : buf*momentum + d;
// d = nesterov ? d + momentum*buf : buf; p = p - lr*d. The loop is a kernel (kernels::SgdStep, with torch's
// roundings spelled out there), compiled for each instruction set path.

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& o, std::vector<OptimizerParam> params, int64_t total)
      : Optimizer(o, std::move(params), total,
                  o.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}) {}

 private:
  void update_block(const Block& blk, float* params, const float* grads, double lr, int64_t step) override {
    const auto& o = options();
    kernels::SgdStep s;
    s.weight_decay = static_cast<float>(o.weight_decay);
    s.momentum = static_cast<float>(o.momentum);
    s.neg_lr = static_cast<float>(-lr);
    // torch skips the decay term when weight_decay is 0 (adding 0*p would turn -0 gradients into +0).
    s.decay = blk.decay && o.weight_decay != 0.0;
    s.use_momentum = o.momentum != 0.0;
    s.first = step == 1;  // torch creates the buffer from the first gradient
    s.nesterov = o.nesterov;
    // On the path's vector instructions (the portable build of this file would call fmaf per element).
    float* buf = s.use_momentum ? slot_data(0) + blk.begin : nullptr;
    kernels::kernels().sgd_step(params + blk.begin, grads + blk.begin, buf, blk.end - blk.begin, s);
  }
};

// ---- Adam / AdamW ------------------------------------------------------------------------------------------
// torch.optim.Adam: g = g + wd*p (L2); torch.optim.AdamW: p = p * (1 - lr*wd) (decoupled). Then
// m = m*beta1 + (1-beta1)*g; v = v*beta2 + (1-beta2)*g*g; denom = sqrt(v)/sqrt(bc2) + eps;
// p = p + (-lr/bc1)*m/denom, with bc_k = 1 - beta_k^step computed in double as torch does in Python.

class Adam final : public Optimizer {
 public:
  Adam(const OptimizerOptions& o, std::vector<OptimizerParam> params, int64_t total)
      : Optimizer(o, std::move(params), total, {"exp_avg", "exp_avg_sq"}), decoupled_(o.kind == "adamw") {}

 private:
  void update_block(const Block& blk, float* params, const float* grads, double lr, int64_t step) override {
    const auto& o = options();
    const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
    const double step_size = lr / bias_correction1;
    kernels::AdamStep s;
    s.l2 = static_cast<float>(o.weight_decay);
    s.decoupled = static_cast<float>(1.0 - lr * o.weight_decay);
    s.beta1 = static_cast<float>(o.beta1);
    s.one_minus_beta1 = static_cast<float>(1.0 - o.beta1);
    s.beta2 = static_cast<float>(o.beta2);
    s.one_minus_beta2 = static_cast<float>(1.0 - o.beta2);
    s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    s.eps = static_cast<float>(o.eps);
    s.neg_step_size = static_cast<float>(-step_size);
    const bool decay = blk.decay && o.weight_decay != 0.0;
    s.decay = !decay ? kernels::AdamStep::Decay::none
              : decoupled_ ? kernels::AdamStep::Decay::decoupled
                           : kernels::AdamStep::Decay::l2;
    kernels::kernels().adam_step(params + blk.begin, grads + blk.begin, slot_data(0) + blk.begin,
                                 slot_data(1) + blk.begin, blk.end - blk.begin, s);
  }

  bool decoupled_;
};

}  // namespace

// ---- Optimizer ---------------------------------------------------------------------------------------------

std::unique_ptr<Optimizer> Optimizer::create(const OptimizerOptions& o, std::vector<OptimizerParam> params,
                                             int64_t total_size) {
  require(o.kind == "sgd" || o.kind == "adam" || o.kind == "adamw",
          "unknown kind '" + o.kind + "' (expected sgd, adam or adamw)");
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
          "expected weight_decay >= 0, got " + num(o.weight_decay));
  if (o.kind == "sgd") {
    require(std::isfinite(o.momentum) && o.momentum >= 0.0, "expected momentum >= 0, got " + num(o.momentum));
    require(!o.nesterov || o.momentum > 0.0, "nesterov requires momentum > 0, got momentum " + num(o.momentum));
  } else {
    require(o.beta1 >= 0.0 && o.beta1 < 1.0, "expected beta1 in [0, 1), got " + num(o.beta1));
    require(o.beta2 >= 0.0 && o.beta2 < 1.0, "expected beta2 in [0, 1), got " + num(o.beta2));
    require(std::isfinite(o.eps) && o.eps >= 0.0, "expected eps >= 0, got " + num(o.eps));
  }
  require(total_size >= 0, "expected total_size >= 0, got " + std::to_string(total_size));

  std::set<std::string> names;
  for (const auto& p : params) {
    require(!p.name.empty(), "parameter at offset " + std::to_string(p.offset) + " has an empty name");
    require(names.insert(p.name).second, "parameter name '" + p.name + "' appears twice");
    require(p.offset >= 0 && p.size >= 0 && p.offset + p.size <= total_size,
            "parameter '" + p.name + "' range [" + std::to_string(p.offset) + ", " +
                std::to_string(p.offset + p.size) + ") is outside the buffer of " + std::to_string(total_size) +
                " floats");
  }
  std::vector<const OptimizerParam*> sorted;
  for (const auto& p : params) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const auto& a = *sorted[i - 1];
    const auto& b = *sorted[i];
    require(a.offset + a.size <= b.offset, "parameters '" + a.name + "' [" + std::to_string(a.offset) + ", " +
                                               std::to_string(a.offset + a.size) + ") and '" + b.name + "' [" +
                                               std::to_string(b.offset) + ", " +
                                               std::to_string(b.offset + b.size) + ") overlap");
  }

  if (o.kind == "sgd") return std::unique_ptr<Optimizer>(new Sgd(o, std::move(params), total_size));
  return std::unique_ptr<Optimizer>(new Adam(o, std::move(params), total_size));
}

Optimizer::Optimizer(const OptimizerOptions& options, std::vector<OptimizerParam> params, int64_t total_size,
                     std::vector<std::string> slot_names)
    : options_(options), params_(std::move(params)), total_size_(total_size), slot_names_(std::move(slot_names)) {
  slots_.assign(slot_names_.size(), std::vector<float>(static_cast<size_t>(total_size_), 0.0f));
  for (const auto& p : params_) {
    const bool decay = options_.decay_all || p.weight_decay;
    for (int64_t b = p.offset; b < p.offset + p.size; b += kBlockSize)
      blocks_.push_back({b, std::min(b + kBlockSize, p.offset + p.size), decay});
  }
}

void Optimizer::set_step_count(int64_t steps) {
  if (steps < 0) throw ConfigError("optimizer: expected step count >= 0, got " + std::to_string(steps));
  step_count_ = steps;
}

std::span<float> Optimizer::slot(size_t i) {
  if (i >= slots_.size())
    throw ConfigError("optimizer: " + options_.kind + " has " + std::to_string(slots_.size()) +
                      " slots, asked for slot " + std::to_string(i));
  return slots_[i];
}

std::span<const float> Optimizer::slot(size_t i) const { return const_cast<Optimizer*>(this)->slot(i); }

void Optimizer::step(std::span<float> params, std::span<const float> grads, double lr) {
  if (!std::isfinite(lr) || lr < 0.0) throw ConfigError("optimizer: expected lr >= 0, got " + num(lr));
  if (static_cast<int64_t>(params.size()) != total_size_ || static_cast<int64_t>(grads.size()) != total_size_)
    throw ShapeError("optimizer: expected parameter and gradient buffers of " + std::to_string(total_size_) +
                     " floats, got " + std::to_string(params.size()) + " and " + std::to_string(grads.size()));
  // One pointer captured, so std::function keeps the lambda in place and the step allocates nothing.
  struct Args {
    Optimizer* self;
    float* p;
    const float* g;
    double lr;
    int64_t step;
  } args{this, params.data(), grads.data(), lr, step_count_ + 1};
  // Each block is element-wise and owns its range: results do not depend on which thread runs it.
  parallel_for(static_cast<int64_t>(blocks_.size()), 1, [a = &args](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a->self->update_block(a->self->blocks_[static_cast<size_t>(i)], a->p, a->g, a->lr, a->step);
  });
  step_count_ += 1;
}

}  // namespace stride
