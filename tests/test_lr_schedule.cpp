#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/lr_schedule.hpp"

using namespace stride;

namespace {

// ---- Golden learning rates from PyTorch 1.13 -------------------------------------------------------------
// Produced offline with /usr/bin/python3 (torch 1.13): an SGD optimizer over one tensor, the scheduler
// below, and get_last_lr()[0] after construction and after each scheduler.step() (optimizer.step() first).
// StepLR(SGD(lr=0.1), step_size=2, gamma=0.5), get_last_lr() for epochs 0..7 (scheduler.step() per epoch)
const std::vector<double> kStepPerEpoch = {0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125};
// MultiStepLR(SGD(lr=0.1), milestones=[2, 5, 6], gamma=0.1), epochs 0..7 (per epoch)
const std::vector<double> kMultiStepPerEpoch = {0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002, 0.0010000000000000002, 0.00010000000000000003, 0.00010000000000000003};
// CosineAnnealingLR(SGD(lr=0.05), T_max=10, eta_min=0.001), iterations 0..10 (per iteration)
const std::vector<double> kCosine = {0.05, 0.04880088464923127, 0.045320916362186214, 0.039900738681165594, 0.03307091636218621, 0.0255, 0.01792908363781379, 0.01109926131883441, 0.005679083637813789, 0.0021991153507687385, 0.001};
// ChainedScheduler([LinearLR(SGD(lr=0.2), start_factor=0.1, total_iters=4), CosineAnnealingLR(T_max=12)]), iterations 0..12
const std::vector<double> kWarmupCosine = {0.020000000000000004, 0.06389258935439474, 0.10263139720814415, 0.13230077554195746, 0.15000000000000005, 0.12588190451025214, 0.10000000000000005, 0.07411809548974797, 0.050000000000000044, 0.029289321881345268, 0.013397459621556135, 0.0034074173710931816, 0.0};
// ChainedScheduler([LinearLR(SGD(lr=0.1), start_factor=0.25, total_iters=3), MultiStepLR(milestones=[4, 8], gamma=0.5)]),
// iterations 0..9 (milestones in iterations = epochs 2 and 4 at 2 iterations per epoch)
const std::vector<double> kWarmupMultiStep = {0.025, 0.05, 0.07500000000000001, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025};
// LinearLR(SGD(lr=0.3), start_factor=0.5, total_iters=5), iterations 0..7
const std::vector<double> kWarmupConstant = {0.15, 0.18, 0.21, 0.24, 0.27, 0.30000000000000004, 0.30000000000000004, 0.30000000000000004};

// torch's chainable StepLR/MultiStepLR multiply the lr by gamma at each decay, as lr_at does: exact.
// CosineAnnealingLR and LinearLR step by a ratio recursion in torch, lr_at uses their closed forms (so that
// it is a pure function of the step); the two agree to a few ulps, checked at 1e-12 relative.
void check_relative(double got, double torch_value, int64_t step) {
  INFO("step " << step << ": got " << got << ", torch " << torch_value);
  CHECK(std::abs(got - torch_value) <= 1e-12 * std::abs(torch_value) + 1e-300);
}

void check_throws(const ScheduleOptions& o, const std::string& message) {
  try {
    lr_at(o, 0);
    FAIL("no ConfigError for: " << message);
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == message);
  }
  CHECK_THROWS_AS(validate(o), ConfigError);
}

}  // namespace

TEST_CASE("step and multistep count epochs and match torch StepLR / MultiStepLR stepped per epoch exactly") {
  ScheduleOptions o;
  o.kind = "step";
  o.base_lr = 0.1;
  o.step_size = 2;
  o.gamma = 0.5;
  o.steps_per_epoch = 3;
  for (int64_t t = 0; t < 24; ++t) {
    INFO("step " << t);
    CHECK(lr_at(o, t) == kStepPerEpoch[static_cast<size_t>(t / 3)]);
  }

  o = {};
  o.kind = "multistep";
  o.base_lr = 0.1;
  o.milestones = {2, 5, 6};
  o.gamma = 0.1;
  o.steps_per_epoch = 4;
  for (int64_t t = 0; t < 32; ++t) {
    INFO("step " << t);
    CHECK(lr_at(o, t) == kMultiStepPerEpoch[static_cast<size_t>(t / 4)]);
  }
  CHECK(lr_at(o, 1000) == kMultiStepPerEpoch.back());  // after the last milestone lr stays put
}

TEST_CASE("cosine anneals per iteration like torch CosineAnnealingLR and holds min_lr after total_steps") {
  ScheduleOptions o;
  o.kind = "cosine";
  o.base_lr = 0.05;
  o.min_lr = 0.001;
  o.total_steps = 10;
  for (int64_t t = 0; t <= 10; ++t) check_relative(lr_at(o, t), kCosine[static_cast<size_t>(t)], t);
  CHECK(lr_at(o, 0) == 0.05);
  CHECK(lr_at(o, 10) == 0.001);
  // torch's cosine would climb back towards base_lr after T_max; a run that overshoots stays at the floor.
  CHECK(lr_at(o, 11) == 0.001);
  CHECK(lr_at(o, 25) == 0.001);
}

TEST_CASE("linear warm-up multiplies the main schedule like torch ChainedScheduler([LinearLR, ...])") {
  ScheduleOptions o;
  SUBCASE("warm-up then cosine") {
    o.kind = "cosine";
    o.base_lr = 0.2;
    o.total_steps = 12;
    o.warmup_steps = 4;
    o.warmup_start_factor = 0.1;
    for (int64_t t = 0; t <= 12; ++t) check_relative(lr_at(o, t), kWarmupCosine[static_cast<size_t>(t)], t);
    CHECK(lr_at(o, 12) == 0.0);
  }
  SUBCASE("warm-up across a multistep decay (milestones in epochs of 2 iterations)") {
    o.kind = "multistep";
    o.base_lr = 0.1;
    o.milestones = {2, 4};
    o.steps_per_epoch = 2;
    o.gamma = 0.5;
    o.warmup_steps = 3;
    o.warmup_start_factor = 0.25;
    for (int64_t t = 0; t < 10; ++t) check_relative(lr_at(o, t), kWarmupMultiStep[static_cast<size_t>(t)], t);
  }
  SUBCASE("warm-up on a constant rate") {
    o.base_lr = 0.3;
    o.warmup_steps = 5;
    o.warmup_start_factor = 0.5;
    for (int64_t t = 0; t < 8; ++t) check_relative(lr_at(o, t), kWarmupConstant[static_cast<size_t>(t)], t);
    CHECK(lr_at(o, 5) == 0.3);  // warm-up over: exactly the base rate from then on
  }
}

TEST_CASE("constant schedule and describe() for logs") {
  ScheduleOptions o;
  o.base_lr = 0.03;
  CHECK(lr_at(o, 0) == 0.03);
  CHECK(lr_at(o, 123456789) == 0.03);
  CHECK(describe(o) == "constant: lr 0.03");
  o.kind = "step";
  o.step_size = 30;
  o.steps_per_epoch = 390;
  CHECK(describe(o) == "step: lr 0.03, x0.1 every 30 epochs (390 steps/epoch)");
  o.kind = "multistep";
  o.milestones = {30, 60, 90};
  o.gamma = 0.2;
  CHECK(describe(o) == "multistep: lr 0.03, x0.2 at epochs 30, 60, 90 (390 steps/epoch)");
  o.kind = "cosine";
  o.total_steps = 4690;
  o.warmup_steps = 100;
  CHECK(describe(o) == "cosine: lr 0.03 -> 0 over 4690 steps, linear warm-up from 0.1x over 100 steps");
}

TEST_CASE("invalid schedules throw ConfigError naming the field and the value") {
  ScheduleOptions o;
  o.kind = "linear";
  check_throws(o, "schedule: unknown kind 'linear' (expected constant, step, multistep or cosine)");
  o = {};
  o.base_lr = -0.1;
  check_throws(o, "schedule: expected base_lr >= 0, got -0.1");
  o = {};
  o.kind = "step";
  check_throws(o, "schedule: step needs step_size >= 1 (epochs), got 0");
  o.step_size = 2;
  o.steps_per_epoch = 0;
  check_throws(o, "schedule: expected steps_per_epoch >= 1, got 0");
  o.steps_per_epoch = 10;
  o.gamma = 0.0;
  check_throws(o, "schedule: expected gamma > 0, got 0");
  o = {};
  o.kind = "multistep";
  check_throws(o, "schedule: multistep needs at least one milestone (epochs), got none");
  o.milestones = {30, 20};
  check_throws(o, "schedule: expected strictly increasing milestones, got [30, 20]");
  o.milestones = {10, 10};
  check_throws(o, "schedule: expected strictly increasing milestones, got [10, 10]");
  o = {};
  o.kind = "cosine";
  check_throws(o, "schedule: cosine needs total_steps >= 1 (iterations), got 0");
  o.total_steps = -5;
  check_throws(o, "schedule: cosine needs total_steps >= 1 (iterations), got -5");
  o.total_steps = 100;
  o.min_lr = 0.5;
  check_throws(o, "schedule: expected min_lr in [0, base_lr 0.01], got 0.5");
  o = {};
  o.warmup_steps = 10;
  o.warmup_start_factor = 0.0;
  check_throws(o, "schedule: expected warmup_start_factor in (0, 1], got 0");
  o.warmup_steps = -1;
  check_throws(o, "schedule: expected warmup_steps >= 0, got -1");
  o = {};
  try {
    lr_at(o, -1);
    FAIL("no throw");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "schedule: expected step >= 0, got -1");
  }
  o.kind = "poly";
  CHECK_THROWS_AS(describe(o), ConfigError);
}
