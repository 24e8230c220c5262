#include "framework/run_setup.hpp"

#include <iostream>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "framework/memory_plan.hpp"
#include "framework/model_state.hpp"
#include "framework/run_config.hpp"
#include "io/detect.hpp"

namespace stride {

using nlohmann::json;

RunData open_run_data(const TrainConfig& config) {
  RunData d;
  d.splits = open_dataset(config.data);
  d.train = d.splits.train.get();
  d.test = d.splits.test.get();
  if (config.limit_train) d.train = (d.train_prefix = std::make_unique<PrefixSource>(*d.train, config.limit_train)).get();
  if (config.limit_test) d.test = (d.test_prefix = std::make_unique<PrefixSource>(*d.test, config.limit_test)).get();
  const DatasetInfo& info = d.train->info();
  if (info.count == 0) throw IoError(config.data + ": the training split is empty");
  const bool cifar_like = info.channels == 3 && info.height == 32 && info.width == 32;
  d.augment = config.augment == "auto" ? (cifar_like ? Augment::crop_flip : Augment::none) : parse_augment(config.augment);
  return d;
}

RunModel build_run_model(const TrainConfig& config, const RunData& data) {
  const DatasetInfo& train = data.train->info();
  ModelSource source = config.model_spec.empty() ? resolve_model(config.model)
                                                 : ModelSource{config.model_spec, "model '" + echo(config.model) + "' (the checkpoint's spec)"};
  Network net = build_network(source.text, Shape{train.channels, train.height, train.width}, source.where);
  std::string spec = spec_with_input(source.text, net.input_shape());
  // The whole run's memory, from shapes, before the first allocation: layer buffers grow to the larger of a
  // training batch and an evaluation batch.
  const int64_t batch = std::max(std::min(config.batch, train.count), std::min(config.eval_batch, data.test->info().count));
  const int64_t data_bytes = data.splits.train->resident_bytes() + data.splits.test->resident_bytes();
  check_plan(plan_training(net, batch, optimizer_slot_count(config.optimizer), data_bytes),
             "training " + source.where + " with batch " + std::to_string(config.batch));
  const int64_t num_classes = net.output_shape().numel();
  if (num_classes > kMaxClasses)
    throw ConfigError(source.where + ": the model has " + std::to_string(num_classes) + " outputs; labels are uint8 " +
                      "and a classifier of more than " + std::to_string(kMaxClasses) + " classes is not supported");
  std::vector<std::string> names = config.class_names.empty() ? train.class_names : config.class_names;
  if (names.size() != static_cast<size_t>(num_classes)) names = numbered_class_names(num_classes);
  net.init(config.seed);
  if (!config.init_weights.empty()) restore_parameters(net, read_weights(config.init_weights), config.init_weights);
  return RunModel{std::move(source), std::move(net), std::move(spec), std::move(names)};
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, const Network& net) {
  std::vector<OptimizerParam> params;
  for (const auto& e : net.param_entries())
    if (e.role == ParamRole::learnable) params.push_back({e.name, e.offset, e.size, e.weight_decay});
  return Optimizer::create(options, std::move(params), net.learnable_count());
}

ScheduleOptions make_schedule(const TrainConfig& config, int64_t train_count) {
  ScheduleOptions schedule = config.schedule;
  schedule.base_lr = config.lr;
  schedule.steps_per_epoch = (train_count - 1) / config.batch + 1;
  const auto total = mul_sizes(schedule.steps_per_epoch, config.epochs);
  if (!total)
    throw UsageError("--epochs " + std::to_string(config.epochs) + " x " + std::to_string(schedule.steps_per_epoch) +
                     " steps per epoch overflows the step counter");
  schedule.total_steps = *total;
  validate(schedule);
  return schedule;
}

bool holds_run(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const CheckpointDir checkpoints(dir);
  return fs::exists(fs::path(dir) / "final.h5", ec) || !checkpoints.list().empty() || !checkpoints.latest().empty();
}

void check_run_dir(const TrainConfig& config, const std::string& resumed_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!resumed_dir.empty() && fs::equivalent(config.out, resumed_dir, ec)) return;
  if (config.overwrite || !holds_run(config.out)) return;
  throw UsageError("--out " + config.out + " holds another run (checkpoints or a final.h5): " +
                   "its checkpoints would mix with this run's; give another --out, --resume " + config.out +
                   " to continue it, or --overwrite to replace it");
}

void remove_run(const std::string& dir, std::ostream& log) {
  namespace fs = std::filesystem;
  if (!holds_run(dir)) return;
  std::error_code ec;
  for (const char* name : {"metrics.jsonl", "checkpoints", "final.h5"}) {
    fs::remove_all(fs::path(dir) / name, ec);
    if (ec) throw IoError(dir + ": --overwrite: cannot remove " + name + ": " + ec.message());
  }
  log << "stride: --overwrite: removed the previous run's metrics.jsonl, checkpoints/ and final.h5 in " << dir << "\n";
}

std::optional<ResumePoint> find_resume(const TrainConfig& config) {
  if (config.resume.empty()) return std::nullopt;
  ResumePoint resume = find_resume_point(config.resume);
  for (const auto& w : resume.warnings) std::cerr << "warning: " << w << "\n";
  if (!resume.warnings.empty()) std::cerr << "warning: resuming from the older " << resume.path << "\n";
  if (!resume.checkpoint.has_progress)
    throw IoError(resume.path + ": a version-" + std::to_string(resume.checkpoint.version) +
                  " checkpoint cannot be resumed (use --init to start from its weights)");
  return resume;
}

namespace {

// Every difference at once, one line each, so a resume that contradicts its checkpoint is fixed in one go.
// The model first: a different model is the likeliest mistake.
void check_same_run(const Checkpoint& ck, const std::string& where, const TrainConfig& config,
                    const RunIdentity& identity, const Optimizer& optimizer) {
  check_json_depth(ck.model_spec, where + ": attribute model_spec");
  std::vector<std::string> diffs;
  const json stored_spec = json::parse(ck.model_spec, nullptr, false);
  const json spec = json::parse(identity.model_spec, nullptr, false);
  if (stored_spec != spec) {
    std::string what;
    const json patch = json::diff(stored_spec, spec);
    for (size_t i = 0; i < patch.size() && i < 3; ++i)
      what += std::string(i ? ", " : "") + patch[i]["op"].get<std::string>() + " " + echo(patch[i]["path"].get<std::string>());
    const json stored_config = json::parse(ck.run_config, nullptr, false);
    const std::string stored_model = stored_config.is_object() && stored_config.contains("model")
                                         ? echo(stored_config["model"].dump()) : std::string("another model");
    diffs.push_back("--model: given \"" + echo(config.model) + "\", the checkpoint has " + stored_model +
                    " (the specs differ: " + what + ")");
  }
  try {
    for (std::string& d : run_config_differences(ck.run_config, identity.run_config)) diffs.push_back(std::move(d));
  } catch (const IoError& e) {
    throw IoError(where + ": " + e.what());
  }
  // The root attributes say it too (and are all an old run_config may lack).
  auto reported = [&](const std::string& flag) {
    for (const auto& d : diffs)
      if (d.rfind(flag + ":", 0) == 0) return true;
    return false;
  };
  if (ck.seed != config.seed && !reported("--seed"))
    diffs.push_back("--seed: given " + std::to_string(config.seed) + ", the checkpoint has " + std::to_string(ck.seed));
  if (ck.optimizer_kind != optimizer.kind() && !reported("--optimizer"))
    diffs.push_back("--optimizer: given \"" + optimizer.kind() + "\", the checkpoint has \"" + echo(ck.optimizer_kind) + "\"");
  if (!diffs.empty()) {
    std::string text;
    for (const auto& d : diffs) text += "\n  " + d;
    throw UsageError(where + ": cannot resume with settings that differ from the checkpoint's (leave these flags out "
                     "to continue with the checkpoint's, or start a new run from its weights with --init " + where +
                     "):" + text);
  }
  if (ck.norm_mean != identity.normalization.mean || ck.norm_std != identity.normalization.stddev)
    throw ConfigError(where + ": the training data differs from the checkpoint's (its per-channel mean/std do not "
                      "match --data " + config.data + ")");
}

}  // namespace

ResumeState resume_run(const ResumePoint& resume, const TrainConfig& config, const RunIdentity& identity,
                       Network& net, Optimizer& optimizer, int64_t steps_per_epoch) {
  const Checkpoint& ck = resume.checkpoint;
  const std::string& where = resume.path;
  check_same_run(ck, where, config, identity, optimizer);
  const int64_t step_in_epoch = ck.samples_seen / config.batch;
  if (step_in_epoch * config.batch != ck.samples_seen || step_in_epoch >= steps_per_epoch ||
      ck.step != ck.epoch * steps_per_epoch + step_in_epoch)
    throw IoError(where + ": position (epoch " + std::to_string(ck.epoch) + ", samples_seen " +
                  std::to_string(ck.samples_seen) + ", step " + std::to_string(ck.step) +
                  ") is not a step boundary of this run (" + std::to_string(steps_per_epoch) + " steps of " +
                  std::to_string(config.batch) + " per epoch)");
  if (ck.epoch > config.epochs)
    throw UsageError(where + ": --epochs " + std::to_string(config.epochs) + ": the checkpoint has done " +
                      std::to_string(ck.epoch) + " epochs already (--epochs is the total)");
  restore_parameters(net, ck, where);
  restore_optimizer(optimizer, net, ck, where);
  return ResumeState{RunPosition{ck.epoch, ck.samples_seen, ck.step}, ck.wall_time, ck.progress,
                     precision_change(ck.run_config, identity.run_config)};
}

}  // namespace stride
