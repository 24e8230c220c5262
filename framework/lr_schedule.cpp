#include "framework/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>

#include "framework/core/errors.hpp"

namespace stride {
namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string list(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError("schedule: " + message);
}

// base * gamma, applied `times` times one after the other: torch's chainable StepLR/MultiStepLR multiply the
// current lr by gamma at each decay, and this reproduces their doubles bit for bit (gamma^k would not).
double decayed(double base, double gamma, int64_t times) {
  double lr = base;
  for (int64_t i = 0; i < times; ++i) lr *= gamma;
  return lr;
}

}  // namespace

void validate(const ScheduleOptions& o) {
  const auto& k = o.kind;
  require(k == "constant" || k == "step" || k == "multistep" || k == "cosine",
          "unknown kind '" + k + "' (expected constant, step, multistep or cosine)");
  require(std::isfinite(o.base_lr) && o.base_lr >= 0.0, "expected base_lr >= 0, got " + num(o.base_lr));
  if (k == "step" || k == "multistep") {
    require(o.steps_per_epoch >= 1, "expected steps_per_epoch >= 1, got " + std::to_string(o.steps_per_epoch));
    require(std::isfinite(o.gamma) && o.gamma > 0.0, "expected gamma > 0, got " + num(o.gamma));
  }
  if (k == "step")
    require(o.step_size >= 1, "step needs step_size >= 1 (epochs), got " + std::to_string(o.step_size));
  if (k == "multistep") {
    require(!o.milestones.empty(), "multistep needs at least one milestone (epochs), got none");
    require(o.milestones.front() >= 0, "expected milestones >= 0, got [" + list(o.milestones) + "]");
    for (size_t i = 1; i < o.milestones.size(); ++i)
      require(o.milestones[i] > o.milestones[i - 1],
              "expected strictly increasing milestones, got [" + list(o.milestones) + "]");
  }
  if (k == "cosine") {
    require(o.total_steps >= 1, "cosine needs total_steps >= 1 (iterations), got " + std::to_string(o.total_steps));
    require(std::isfinite(o.min_lr) && o.min_lr >= 0.0 && o.min_lr <= o.base_lr,
            "expected min_lr in [0, base_lr " + num(o.base_lr) + "], got " + num(o.min_lr));
  }
  require(o.warmup_steps >= 0, "expected warmup_steps >= 0, got " + std::to_string(o.warmup_steps));
  if (o.warmup_steps > 0)
    require(o.warmup_start_factor > 0.0 && o.warmup_start_factor <= 1.0,
            "expected warmup_start_factor in (0, 1], got " + num(o.warmup_start_factor));
}

double lr_at(const ScheduleOptions& o, int64_t step) {
  validate(o);
  require(step >= 0, "expected step >= 0, got " + std::to_string(step));
  double lr = o.base_lr;
  if (o.kind == "step") {
    lr = decayed(o.base_lr, o.gamma, (step / o.steps_per_epoch) / o.step_size);
  } else if (o.kind == "multistep") {
    const int64_t epoch = step / o.steps_per_epoch;
    const auto passed = std::upper_bound(o.milestones.begin(), o.milestones.end(), epoch) - o.milestones.begin();
    lr = decayed(o.base_lr, o.gamma, passed);
  } else if (o.kind == "cosine") {
    // torch's closed form (_get_closed_form_lr), term for term; its per-step recursion agrees to ~1e-16.
    lr = step >= o.total_steps
             ? o.min_lr
             : o.min_lr + (o.base_lr - o.min_lr) *
                              (1.0 + std::cos(std::numbers::pi * static_cast<double>(step) /
                                              static_cast<double>(o.total_steps))) /
                              2.0;
  }
  if (o.warmup_steps > 0 && step < o.warmup_steps) {
    const double factor = o.warmup_start_factor + (1.0 - o.warmup_start_factor) * static_cast<double>(step) /
                                                      static_cast<double>(o.warmup_steps);
    lr *= factor;
  }
  return lr;
}

std::string describe(const ScheduleOptions& o) {
  validate(o);
  std::string s;
  const std::string per_epoch = " (" + std::to_string(o.steps_per_epoch) + " steps/epoch)";
  if (o.kind == "constant") {
    s = "constant: lr " + num(o.base_lr);
  } else if (o.kind == "step") {
    s = "step: lr " + num(o.base_lr) + ", x" + num(o.gamma) + " every " + std::to_string(o.step_size) + " epochs" +
        per_epoch;
  } else if (o.kind == "multistep") {
    s = "multistep: lr " + num(o.base_lr) + ", x" + num(o.gamma) + " at epochs " + list(o.milestones) + per_epoch;
  } else {
    s = "cosine: lr " + num(o.base_lr) + " -> " + num(o.min_lr) + " over " + std::to_string(o.total_steps) +
        " steps";
  }
  if (o.warmup_steps > 0)
    s += ", linear warm-up from " + num(o.warmup_start_factor) + "x over " + std::to_string(o.warmup_steps) +
         " steps";
  return s;
}

}  // namespace stride
