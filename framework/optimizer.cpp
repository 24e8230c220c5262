#include "framework/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <experimental/simd>
#include <set>
#include <utility>

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"

// The update rules below reproduce torch's float arithmetic operation by operation. Torch rounds once where
// it fuses a multiply into an add (Tensor.add with alpha is vec::fmadd; addcmul's self + (value*t1)*t2 is
// contracted to an FMA by the compiler in torch's AVX2 build) and rounds every other operation separately
// (mul_, the division and eps of the Adam denominator, addcdiv_). The fused steps are written as explicit
// FMAs; contraction is switched off for the rest of this file so the compiler cannot fuse a product into
// the following add where torch rounds twice. The tests check bit equality with torch, and the result of
// an element does not depend on whether a vector loop or its scalar tail computed it.
// (The build passes -ffp-contract=off everywhere too; clang, in the sanitizer builds, takes only that.)
#if !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
// GCC 12 false positive on _mm512_undefined_ps() inside the AVX-512 sqrt that stdx::sqrt expands to.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace stride {
namespace {

// Elements per block of the update loop: large enough to amortize a task, small enough to spread a
// 100k-parameter network over a few threads. A constant, so blocks never depend on the thread count.
constexpr int64_t kBlockSize = 8192;

// std::fma / std::sqrt are defined before the pragma above, and GCC will not inline a function compiled
// with other optimization options, which would leave the kernels as scalar calls; the builtins inline.
inline float fused_multiply_add(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline float square_root(float a) { return __builtin_sqrtf(a); }

// GCC vectorizes no loop with a sqrt unless errno is off (-fno-math-errno, which a pragma cannot set), so
// the Adam loop is written with the Parallelism TS simd type (AVX-512/AVX2/SSE by the build's -march).
namespace stdx = std::experimental;
using Simd = stdx::native_simd<float>;
inline Simd fused_multiply_add(const Simd& a, const Simd& b, const Simd& c) { return stdx::fma(a, b, c); }
inline Simd square_root(const Simd& a) { return stdx::sqrt(a); }

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
// d = nesterov ? d + momentum*buf : buf; p = p - lr*d.

struct SgdScalars {
  float weight_decay, momentum, neg_lr;
};

// p, g, buf: (n) -> p, buf updated in place
template <bool Decay, bool First, bool Nesterov>
void sgd_momentum_kernel(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n,
                         SgdScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (Decay) d = fused_multiply_add(p[i], s.weight_decay, d);  // d_p.add(param, alpha=wd)
    float b;
    if constexpr (First) {
      b = d;  // torch.clone(d_p)
    } else {
      b = buf[i] * s.momentum;  // buf.mul_(momentum)
      b = b + d;                // .add_(d_p, alpha=1): fmadd with 1 is a plain add
    }
    buf[i] = b;
    if constexpr (Nesterov) d = fused_multiply_add(b, s.momentum, d);  // d_p.add(buf, alpha=momentum)
    else d = b;
    p[i] = fused_multiply_add(d, s.neg_lr, p[i]);  // param.add_(d_p, alpha=-lr)
  }
}

// p, g: (n) -> p updated in place
template <bool Decay>
void sgd_plain_kernel(float* __restrict p, const float* __restrict g, int64_t n, SgdScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (Decay) d = fused_multiply_add(p[i], s.weight_decay, d);
    p[i] = fused_multiply_add(d, s.neg_lr, p[i]);
  }
}

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& o, std::vector<OptimizerParam> params, int64_t total)
      : Optimizer(o, std::move(params), total,
                  o.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}) {}

 private:
  void update_block(const Block& blk, float* params, const float* grads, double lr, int64_t step) override {
    const auto& o = options();
    const SgdScalars s{static_cast<float>(o.weight_decay), static_cast<float>(o.momentum),
                       static_cast<float>(-lr)};
    // torch skips the decay term when weight_decay is 0 (adding 0*p would turn -0 gradients into +0).
    const bool decay = blk.decay && o.weight_decay != 0.0;
    float* p = params + blk.begin;
    const float* g = grads + blk.begin;
    const int64_t n = blk.end - blk.begin;
    if (o.momentum == 0.0) {
      decay ? sgd_plain_kernel<true>(p, g, n, s) : sgd_plain_kernel<false>(p, g, n, s);
      return;
    }
    float* buf = slot_data(0) + blk.begin;
    const bool first = step == 1;  // torch creates the buffer from the first gradient
    const int variant = (decay ? 4 : 0) | (first ? 2 : 0) | (o.nesterov ? 1 : 0);
    switch (variant) {
      case 0: sgd_momentum_kernel<false, false, false>(p, g, buf, n, s); break;
      case 1: sgd_momentum_kernel<false, false, true>(p, g, buf, n, s); break;
      case 2: sgd_momentum_kernel<false, true, false>(p, g, buf, n, s); break;
      case 3: sgd_momentum_kernel<false, true, true>(p, g, buf, n, s); break;
      case 4: sgd_momentum_kernel<true, false, false>(p, g, buf, n, s); break;
      case 5: sgd_momentum_kernel<true, false, true>(p, g, buf, n, s); break;
      case 6: sgd_momentum_kernel<true, true, false>(p, g, buf, n, s); break;
      default: sgd_momentum_kernel<true, true, true>(p, g, buf, n, s); break;
    }
  }
};

// ---- Adam / AdamW ------------------------------------------------------------------------------------------
// torch.optim.Adam: g = g + wd*p (L2); torch.optim.AdamW: p = p * (1 - lr*wd) (decoupled). Then
// m = m*beta1 + (1-beta1)*g; v = v*beta2 + (1-beta2)*g*g; denom = sqrt(v)/sqrt(bc2) + eps;
// p = p + (-lr/bc1)*m/denom, with bc_k = 1 - beta_k^step computed in double as torch does in Python.

struct AdamScalars {
  float l2;                   // Adam's weight_decay (L2 on the gradient)
  float decoupled;            // AdamW's 1 - lr*wd
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt, eps, neg_step_size;
};

// One element (T = float) or one SIMD vector of elements (T = Simd) of the Adam update, in torch's order.
template <bool L2, bool Decoupled, class T>
inline void adam_update(T& p, T g, T& m, T& v, const AdamScalars& s) {
  if constexpr (Decoupled) p = p * T(s.decoupled);          // param.mul_(1 - lr*wd)
  if constexpr (L2) g = fused_multiply_add(p, T(s.l2), g);  // grad.add(param, alpha=wd)
  m = fused_multiply_add(g, T(s.one_minus_beta1), m * T(s.beta1));  // exp_avg.mul_(b1).add_(g, alpha=1-b1)
  // exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2): torch's build fuses addcmul's self + (value*g)*g
  // into an FMA (checked against torch 1.13 on 100k random elements: fused matches all, unfused ~5% off).
  v = fused_multiply_add(T(s.one_minus_beta2) * g, g, v * T(s.beta2));
  const T denom = square_root(v) / T(s.bias_correction2_sqrt) + T(s.eps);  // (sqrt / bc2_sqrt).add_(eps)
  p = p + T(s.neg_step_size) * m / denom;                                    // addcdiv_(m, denom, -step_size)
}

// p, g, m, v: (n) -> p, m, v updated in place
// Whole SIMD vectors first, then the tail one by one; every operation is IEEE-rounded the same way in
// both (sqrt and division are correctly rounded, FMAs explicit), so an element's result does not depend
// on which of the two loops handles it.
template <bool L2, bool Decoupled>
void adam_kernel(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                 int64_t n, const AdamScalars& s) {
  constexpr auto kWidth = static_cast<int64_t>(Simd::size());
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    Simd pv(p + i, stdx::element_aligned), mv(m + i, stdx::element_aligned), vv(v + i, stdx::element_aligned);
    adam_update<L2, Decoupled>(pv, Simd(g + i, stdx::element_aligned), mv, vv, s);
    pv.copy_to(p + i, stdx::element_aligned);
    mv.copy_to(m + i, stdx::element_aligned);
    vv.copy_to(v + i, stdx::element_aligned);
  }
  for (; i < n; ++i) adam_update<L2, Decoupled>(p[i], g[i], m[i], v[i], s);
}

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
    const AdamScalars s{static_cast<float>(o.weight_decay),
                        static_cast<float>(1.0 - lr * o.weight_decay),
                        static_cast<float>(o.beta1),
                        static_cast<float>(1.0 - o.beta1),
                        static_cast<float>(o.beta2),
                        static_cast<float>(1.0 - o.beta2),
                        static_cast<float>(std::sqrt(bias_correction2)),
                        static_cast<float>(o.eps),
                        static_cast<float>(-step_size)};
    const bool decay = blk.decay && o.weight_decay != 0.0;
    float* p = params + blk.begin;
    const float* g = grads + blk.begin;
    float* m = slot_data(0) + blk.begin;
    float* v = slot_data(1) + blk.begin;
    const int64_t n = blk.end - blk.begin;
    if (!decay) adam_kernel<false, false>(p, g, m, v, n, s);
    else if (decoupled_) adam_kernel<false, true>(p, g, m, v, n, s);
    else adam_kernel<true, false>(p, g, m, v, n, s);
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
