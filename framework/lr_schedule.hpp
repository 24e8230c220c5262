#pragma once
// Learning-rate schedules as pure functions of the global iteration, so a resumed run needs only the step
// counter (the optimizer's step_count()) to continue with the same rates.
//
//   lr(t) = warmup_factor(t) * main(t),   t = 0, 1, ... the index of the update about to be made
//
// main(t), with epoch = t / steps_per_epoch:
//   constant   base_lr
//   step       base_lr * gamma^(epoch / step_size)             torch StepLR, stepped once per epoch
//   multistep  base_lr * gamma^(#milestones <= epoch)          torch MultiStepLR, stepped once per epoch
//   cosine     min_lr + (base_lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2 for t < total_steps, then
//              min_lr                                           torch CosineAnnealingLR(T_max=total_steps,
//                                                               eta_min=min_lr) stepped per iteration (torch
//                                                               would rise again after T_max; we hold min_lr)
// warmup_factor(t) = warmup_start_factor + (1 - warmup_start_factor) * min(t, warmup_steps) / warmup_steps,
//   torch LinearLR(start_factor, end_factor=1, total_iters=warmup_steps) stepped per iteration; 1 when
//   warmup_steps is 0. The product is what torch's ChainedScheduler([LinearLR, main]) gives for
//   constant/step/multistep and for cosine with min_lr 0.
//
// So step_size and milestones count EPOCHS (as PyTorch users call scheduler.step() once per epoch), while
// warmup_steps and total_steps count ITERATIONS.
#include <cstdint>
#include <string>
#include <vector>

namespace stride {

struct ScheduleOptions {
  std::string kind = "constant";  // constant | step | multistep | cosine
  double base_lr = 0.01;
  int64_t steps_per_epoch = 1;      // iterations per epoch; step and multistep count epochs with it
  int64_t step_size = 0;            // step: epochs between decays (>= 1)
  std::vector<int64_t> milestones;  // multistep: epochs at which lr is multiplied by gamma, increasing
  double gamma = 0.1;               // step, multistep: decay factor (> 0)
  double min_lr = 0.0;              // cosine: the floor (torch's eta_min), in [0, base_lr]
  int64_t total_steps = 0;          // cosine: iterations to anneal over (torch's T_max), >= 1
  int64_t warmup_steps = 0;         // iterations of linear warm-up, 0 for none
  double warmup_start_factor = 0.1;  // lr multiplier at iteration 0 of the warm-up, in (0, 1]
};

// Throws ConfigError "schedule: ..." naming the field, what was expected and the value found.
void validate(const ScheduleOptions& options);

// The learning rate for the update at global iteration `step` (0-based). Validates `options` (cheap).
double lr_at(const ScheduleOptions& options, int64_t step);

// One line for logs, e.g. "cosine: lr 0.1 -> 0 over 4690 steps, linear warm-up from 0.1x over 100 steps".
std::string describe(const ScheduleOptions& options);

}  // namespace stride
