#include "framework/checkpoint_policy.hpp"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "framework/core/errors.hpp"
#include "framework/model_state.hpp"
#include "framework/numeric_check.hpp"

namespace stride {

CheckpointPolicy::CheckpointPolicy(const TrainConfig& config, RunIdentity identity, const Network& net,
                                   const Optimizer& optimizer, MetricsLog& metrics, const RunClock& clock,
                                   std::ostream& log)
    : identity_(std::move(identity)),
      net_(net),
      optimizer_(optimizer),
      metrics_(metrics),
      clock_(clock),
      log_(log),
      dir_(config.out),
      every_steps_(config.checkpoint_every),
      every_epochs_(config.checkpoint_epochs),
      keep_(config.keep),
      every_seconds_(config.checkpoint_minutes * 60),
      test_step_seconds_(config.test_step_seconds) {}

bool CheckpointPolicy::due_by_clock(int64_t step) const {
  if (!(every_seconds_ > 0)) return false;
  if (test_step_seconds_ > 0) {
    return static_cast<double>(step - last_step_) * test_step_seconds_ >= every_seconds_;
  }
  return RunClock::since(last_time_) >= every_seconds_;
}

Checkpoint CheckpointPolicy::make(const RunPosition& next) const {
  // A checkpoint is only ever of finite weights, so the newest one is always a good one to go back to.
  const std::string bad = first_non_finite_param(net_);
  if (!bad.empty())
    throw NumericError("step " + std::to_string(next.step) + ": " + bad +
                       " holds NaN or infinity; no checkpoint is written" +
                       (last_path_.empty() ? std::string() : "; the last good checkpoint is " + last_path_));
  Checkpoint ck;
  ck.stride_version = STRIDE_VERSION;
  ck.epoch = next.epoch;
  ck.step = next.step;
  ck.samples_seen = next.samples;
  ck.seed = identity_.seed;
  ck.wall_time = clock_.seconds();
  ck.model_spec = identity_.model_spec;
  ck.run_config = identity_.run_config;
  ck.norm_mean = identity_.normalization.mean;
  ck.norm_std = identity_.normalization.stddev;
  ck.class_names = identity_.class_names;
  ck.has_progress = true;
  ck.progress = metrics_.progress();
  ck.progress.next_lr = lr_at(identity_.schedule, next.step);
  store_parameters(net_, ck);
  store_optimizer(optimizer_, net_, ck);
  return ck;
}

void CheckpointPolicy::save(const RunPosition& next, bool required) {
  // Every attempt restarts the minutes, a failed one too: a full disk is not retried at every step.
  last_time_ = RunClock::Clock::now();
  last_step_ = next.step;
  metrics_.flush();
  const auto t0 = RunClock::Clock::now();
  try {
    last_path_ = dir_.save(make(next), keep_);
  } catch (const IoError& e) {
    if (required) throw;
    metrics_.clear_bar();
    std::cerr << "warning: " << e.what() << "; training continues\n";
    return;
  }
  const double took = RunClock::since(t0);
  seconds_ += took;
  char text[64];
  std::snprintf(text, sizeof text, " (%.1f ms)\n", took * 1e3);
  metrics_.clear_bar();
  log_ << "stride: checkpoint " << last_path_ << text << std::flush;
}

std::string CheckpointPolicy::save_final(const RunPosition& next) {
  const std::string path = (std::filesystem::path(dir_.run_dir()) / "final.h5").string();
  write_checkpoint(path, make(next));
  return path;
}

}  // namespace stride
