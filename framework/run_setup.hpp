#pragma once
// What a training run resolves before its first step, each part on its own: the data and its normalization,
// the model and its first weights, the optimizer and schedule, and, for --resume, the checkpoint's checks and
// the position it continues from.
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/checkpoint_policy.hpp"
#include "framework/input_pipeline.hpp"
#include "framework/model_spec.hpp"
#include "framework/network.hpp"
#include "framework/optimizer.hpp"
#include "framework/train_config.hpp"
#include "io/checkpoint_dir.hpp"
#include "io/dataset.hpp"

namespace stride {

struct RunData {
  DatasetSplits splits;
  std::unique_ptr<SampleSource> train_prefix, test_prefix;  // the first --limit-train / --limit-test samples
  const SampleSource* train = nullptr;  // what the run trains and tests on
  const SampleSource* test = nullptr;
  Augment augment = Augment::none;      // --augment, with "auto" resolved for the data
};
// Opens --data; throws for an empty training split.
RunData open_run_data(const TrainConfig& config);

struct RunModel {
  ModelSource source;
  Network net;
  std::string spec;                      // with its "input" filled in, as checkpoints store it
  std::vector<std::string> class_names;  // one per output (the data's, --classes, or "0".."K-1")
};
// Builds --model for the training images, checks the run's memory plan against --max-memory, initializes it
// from --seed, then from --init when given.
RunModel build_run_model(const TrainConfig& config, const RunData& data);

// The optimizer over the network's learnable parameters.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, const Network& net);
// The schedule of --schedule and its flags, filled in for `train_count` samples (validated).
ScheduleOptions make_schedule(const TrainConfig& config, int64_t train_count);

// Whether `dir` holds a run that could be resumed or whose files would mix with a new one's: step checkpoints
// (or a `latest`) in dir/checkpoints, or a final.h5. A run killed before its first checkpoint left only
// metrics.jsonl, which a new run starts afresh.
bool holds_run(const std::string& dir);
// Throws UsageError when config.out holds a run other than the one being resumed (`resumed_dir`, empty
// without --resume) and --overwrite is not given: the old run's checkpoints would mix with the new run's and
// pruning would delete the wrong ones.
void check_run_dir(const TrainConfig& config, const std::string& resumed_dir);
// --overwrite: deletes the run files of `dir` (metrics.jsonl, checkpoints/, final.h5), nothing else, and says so.
void remove_run(const std::string& dir, std::ostream& log);

// Finds the checkpoint of --resume (warnings about newer unreadable ones go to stderr); throws IoError when
// it cannot be resumed. Done before the data is read, so a missing or corrupt checkpoint fails fast.
std::optional<ResumePoint> find_resume(const TrainConfig& config);

// Where a resumed run continues, and the metrics sums of the epoch in progress.
struct ResumeState {
  RunPosition position;
  double wall_time = 0;
  TrainingProgress progress;
  std::string precision_note;  // precision_change()'s sentence when the precision changes at the resume
};
// Checks that the checkpoint is of this run (model, seed, optimizer, settings, data normalization) and loads
// its parameters and optimizer state. Throws ConfigError or IoError naming the checkpoint and what differs.
ResumeState resume_run(const ResumePoint& resume, const TrainConfig& config, const RunIdentity& identity,
                       Network& net, Optimizer& optimizer, int64_t steps_per_epoch);

}  // namespace stride
