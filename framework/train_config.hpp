#pragma once
// The settings of one `stride train` run, as the command line and config files give them.
#include <csignal>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "framework/core/bf16.hpp"
#include "framework/lr_schedule.hpp"
#include "framework/optimizer.hpp"

namespace stride {

// How a run shows its steps on stdout between the epoch lines (`stride train --progress`): a live bar redrawn
// in place (carriage returns and ESC[K), a plain line every --log-every steps, or nothing. `automatic` is a
// bar when stdout is a terminal, else lines; `stride train` also makes it lines under a launcher.
enum class ProgressDisplay { automatic, bar, lines, none };

struct TrainConfig {
  std::string model = "lenet5";  // zoo name or spec file
  // The spec JSON itself, used instead of resolving `model` when set: a resume without --model takes the
  // checkpoint's spec, so a spec file that has moved or changed since does not matter.
  std::string model_spec;
  std::string data;              // CIFAR-10 / IDX directory or HDF5 file
  std::string out = "runs/latest";  // empty with `resume`: the run directory of the checkpoint
  int64_t epochs = 5;            // total, counting epochs done before a resume
  int64_t batch = 64;
  // Samples per micro-batch: a step runs forward and backward over its micro-batches one after another and
  // adds up their gradients exactly (framework/training_step.hpp). 0 = the default: 16 when it divides the
  // batch, else the whole batch. The run resolves it (resolve_micro_batch) and checkpoints store the result.
  int64_t micro_batch = 0;
  // Megabytes of fixed-point gradients per bucket of the exact sum: with several processes, each bucket's
  // allreduce starts as soon as backward has finished it. Does not change results.
  double bucket_mb = 1.0;
  // The hosts of the processes that train together, one per process (informational: run_config, metrics).
  std::vector<std::string> hosts;
  // The threads each process runs, one per process (informational: the start-up log line names them when they
  // differ, so a task that its launcher bound to fewer cores shows).
  std::vector<int64_t> threads;
  double lr = 0.01;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;      // base_lr, total_steps and steps_per_epoch are filled in by the run setup
  uint64_t seed = 1;
  // bf16: convolutions and linear layers on bf16 inputs and weights with fp32 sums (fp32 master weights,
  // optimizer, batch norm, loss), as torch.autocast("cpu", torch.bfloat16). Checkpoints record it.
  Precision precision = Precision::fp32;
  std::string augment = "auto";  // auto = crop-flip for 3x32x32 data, none otherwise
  std::string init_weights;      // start from these parameters (a checkpoint, final.h5 or weights-only file)
  int64_t log_every = 50;        // steps between metrics lines
  int64_t eval_batch = 500;
  int64_t limit_train = 0;       // use only the first N training samples (0 = all)
  int64_t limit_test = 0;
  std::vector<std::string> class_names;  // overrides the data's names (Fashion-MNIST)
  ProgressDisplay progress = ProgressDisplay::automatic;

  // Checkpoints (docs/checkpoint.md): RUN_DIR/checkpoints/step-<step>.h5, the newest `keep` kept.
  std::string resume;              // continue from this run directory or checkpoint file
  // With `resume`: the options the command line (or --config) gave, by name without "--" ("lr", "batch").
  // Every other setting comes from the checkpoint (with_stored_settings, framework/run_config.hpp); the
  // given ones must agree with it where they change the numbers. Unset (a library caller that repeats the
  // whole recipe): every setting is as given here.
  std::optional<std::set<std::string>> given;
  // `out` holding another run (checkpoints or a final.h5) is an error unless `resume` continues it or
  // `overwrite` is set, which deletes that run's metrics.jsonl, checkpoints/ and final.h5 first.
  bool overwrite = false;
  // A NaN or infinity in the loss or the gradients: "stop" ends the run with an error naming the step and the
  // layer (the checkpoints written so far stay); "skip-batch" makes no update for that step, warns and goes on.
  std::string on_nan = "stop";
  int64_t checkpoint_every = 0;    // steps between checkpoints (0 = none by steps)
  int64_t checkpoint_epochs = 1;   // epochs between checkpoints (0 = none by epochs)
  // Minutes of wall-clock time between checkpoints (0 = none by time), decided by process 0's clock at a
  // step boundary and shared with every process, so a failure loses at most that much work. Every checkpoint,
  // whatever triggered it, restarts the count. 5: see docs/checkpoint.md ("When checkpoints are written").
  double checkpoint_minutes = 5;
  int64_t keep = 3;
  // Polled between steps; when it becomes non-zero the run finishes the step, writes a checkpoint and
  // returns with TrainResult::stopped (set by the SIGTERM/SIGINT handler of `stride train`).
  const volatile std::sig_atomic_t* stop_flag = nullptr;
  int64_t stop_after_step = 0;     // tests: behave as if stopped by a signal right after this global step
  // Tests (STRIDE_TEST_STEP_SECONDS): when > 0, the --checkpoint-minutes clock counts this many seconds per
  // step instead of reading the wall clock, so a test of the cadence cannot be broken by a busy machine.
  double test_step_seconds = 0;
};

// Throws ConfigError naming the flag and the value for settings that cannot start a run.
void validate(const TrainConfig& config);

}  // namespace stride
