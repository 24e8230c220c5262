#include "framework/run_config.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "framework/model_spec.hpp"

namespace stride {
namespace {

using nlohmann::json;

// What a setting's value is read from.
struct RunFacts {
  const TrainConfig& config;
  const ScheduleOptions& schedule;
  const std::string& augment;
  int64_t train_count;
};

// Whether a resumed run must have the same value.
enum class Compared {
  no,           // informational (the data path, --epochs, logging, checkpoint cadence)
  yes,
  with_sgd,     // only when the run uses SGD (momentum, Nesterov)
  with_adam,    // only when it uses Adam or AdamW (betas, eps)
  with_cosine,  // only when the cosine schedule anneals over it
};

using Restore = void (*)(TrainConfig&, const json&);

struct RunSetting {
  const char* key;   // JSON pointer into run_config
  const char* flag;  // what the user sets it with, for messages; "--name" is the option `name`
  Compared compared;
  json (*value)(const RunFacts&);
  // What a checkpoint written before this setting existed stands for (JSON text); nullptr: nothing.
  const char* absent_as = nullptr;
  // Puts a stored value back into the settings of a resumed run that did not give the flag; nullptr for a
  // value derived from others (steps per epoch, training samples) or a fact of the run (processes, hosts).
  Restore restore = nullptr;
};

const OptimizerOptions& opt(const RunFacts& f) { return f.config.optimizer; }

// Every setting, in the order differences are reported.
const std::vector<RunSetting>& settings() {
  static const std::vector<RunSetting> table = {
      // The model is restored from the checkpoint's spec itself (with_stored_settings).
      {"/model", "--model", Compared::no, [](const RunFacts& f) -> json { return f.config.model; }},
      {"/data", "--data", Compared::no, [](const RunFacts& f) -> json { return f.config.data; }, nullptr,
       [](TrainConfig& c, const json& v) { c.data = v.get<std::string>(); }},
      {"/train_count", "training samples (--limit-train, --data)", Compared::yes,
       [](const RunFacts& f) -> json { return f.train_count; }},
      {"/epochs", "--epochs", Compared::no, [](const RunFacts& f) -> json { return f.config.epochs; }, nullptr,
       [](TrainConfig& c, const json& v) { c.epochs = v.get<int64_t>(); }},
      {"/batch", "--batch", Compared::yes, [](const RunFacts& f) -> json { return f.config.batch; }, nullptr,
       [](TrainConfig& c, const json& v) { c.batch = v.get<int64_t>(); }},
      // Before the micro-batch size was resolved, 0 stood for the whole batch (restored after --batch).
      {"/micro_batch", "--micro-batch", Compared::yes, [](const RunFacts& f) -> json { return f.config.micro_batch; },
       "0", [](TrainConfig& c, const json& v) { c.micro_batch = v.get<int64_t>() == 0 ? c.batch : v.get<int64_t>(); }},
      {"/bucket_mb", "--bucket-mb", Compared::no, [](const RunFacts& f) -> json { return f.config.bucket_mb; }, nullptr,
       [](TrainConfig& c, const json& v) { c.bucket_mb = v.get<double>(); }},
      {"/processes", "processes (mpirun -np)", Compared::no,
       [](const RunFacts& f) -> json { return f.config.hosts.empty() ? size_t{1} : f.config.hosts.size(); }},
      {"/hosts", "hosts", Compared::no, [](const RunFacts& f) -> json { return f.config.hosts; }},
      {"/seed", "--seed", Compared::yes, [](const RunFacts& f) -> json { return f.config.seed; }, nullptr,
       [](TrainConfig& c, const json& v) { c.seed = v.get<uint64_t>(); }},
      // Not compared: a resume may switch precision; it continues from the fp32 master weights and says so
      // (precision_change).
      {"/precision", "--precision", Compared::no,
       [](const RunFacts& f) -> json { return precision_name(f.config.precision); }, "\"fp32\"",
       [](TrainConfig& c, const json& v) { c.precision = parse_precision(v.get<std::string>(), "run_config precision"); }},
      {"/augment", "--augment", Compared::yes, [](const RunFacts& f) -> json { return f.augment; }, nullptr,
       [](TrainConfig& c, const json& v) { c.augment = v.get<std::string>(); }},
      {"/limit_train", "--limit-train", Compared::no, [](const RunFacts& f) -> json { return f.config.limit_train; },
       nullptr, [](TrainConfig& c, const json& v) { c.limit_train = v.get<int64_t>(); }},
      {"/limit_test", "--limit-test", Compared::no, [](const RunFacts& f) -> json { return f.config.limit_test; },
       nullptr, [](TrainConfig& c, const json& v) { c.limit_test = v.get<int64_t>(); }},
      {"/log_every", "--log-every", Compared::no, [](const RunFacts& f) -> json { return f.config.log_every; }, nullptr,
       [](TrainConfig& c, const json& v) { c.log_every = v.get<int64_t>(); }},
      {"/eval_batch", "--eval-batch", Compared::no, [](const RunFacts& f) -> json { return f.config.eval_batch; },
       nullptr, [](TrainConfig& c, const json& v) { c.eval_batch = v.get<int64_t>(); }},
      {"/on_nan", "--on-nan", Compared::no, [](const RunFacts& f) -> json { return f.config.on_nan; }, nullptr,
       [](TrainConfig& c, const json& v) { c.on_nan = v.get<std::string>(); }},
      {"/checkpoint_every", "--checkpoint-every", Compared::no,
       [](const RunFacts& f) -> json { return f.config.checkpoint_every; }, nullptr,
       [](TrainConfig& c, const json& v) { c.checkpoint_every = v.get<int64_t>(); }},
      {"/checkpoint_epochs", "--checkpoint-epochs", Compared::no,
       [](const RunFacts& f) -> json { return f.config.checkpoint_epochs; }, nullptr,
       [](TrainConfig& c, const json& v) { c.checkpoint_epochs = v.get<int64_t>(); }},
      {"/checkpoint_minutes", "--checkpoint-minutes", Compared::no,
       [](const RunFacts& f) -> json { return f.config.checkpoint_minutes; }, nullptr,
       [](TrainConfig& c, const json& v) { c.checkpoint_minutes = v.get<double>(); }},
      {"/keep", "--keep", Compared::no, [](const RunFacts& f) -> json { return f.config.keep; }, nullptr,
       [](TrainConfig& c, const json& v) { c.keep = v.get<int64_t>(); }},
      {"/optimizer/kind", "--optimizer", Compared::yes, [](const RunFacts& f) -> json { return opt(f).kind; }, nullptr,
       [](TrainConfig& c, const json& v) { c.optimizer.kind = v.get<std::string>(); }},
      {"/optimizer/momentum", "--momentum", Compared::with_sgd, [](const RunFacts& f) -> json { return opt(f).momentum; },
       nullptr, [](TrainConfig& c, const json& v) { c.optimizer.momentum = v.get<double>(); }},
      {"/optimizer/nesterov", "--nesterov", Compared::with_sgd, [](const RunFacts& f) -> json { return opt(f).nesterov; },
       nullptr, [](TrainConfig& c, const json& v) { c.optimizer.nesterov = v.get<bool>(); }},
      {"/optimizer/weight_decay", "--weight-decay", Compared::yes,
       [](const RunFacts& f) -> json { return opt(f).weight_decay; }, nullptr,
       [](TrainConfig& c, const json& v) { c.optimizer.weight_decay = v.get<double>(); }},
      {"/optimizer/decay_all", "--no-decay-bias-bn", Compared::yes,
       [](const RunFacts& f) -> json { return opt(f).decay_all; }, nullptr,
       [](TrainConfig& c, const json& v) { c.optimizer.decay_all = v.get<bool>(); }},
      {"/optimizer/beta1", "--beta1", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).beta1; },
       nullptr, [](TrainConfig& c, const json& v) { c.optimizer.beta1 = v.get<double>(); }},
      {"/optimizer/beta2", "--beta2", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).beta2; },
       nullptr, [](TrainConfig& c, const json& v) { c.optimizer.beta2 = v.get<double>(); }},
      {"/optimizer/eps", "optimizer eps", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).eps; },
       nullptr, [](TrainConfig& c, const json& v) { c.optimizer.eps = v.get<double>(); }},
      {"/schedule/kind", "--schedule", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.kind; }, nullptr,
       [](TrainConfig& c, const json& v) { c.schedule.kind = v.get<std::string>(); }},
      {"/schedule/base_lr", "--lr", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.base_lr; }, nullptr,
       [](TrainConfig& c, const json& v) { c.lr = v.get<double>(); }},
      {"/schedule/steps_per_epoch", "steps per epoch (--batch, training samples)", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.steps_per_epoch; }},
      {"/schedule/step_size", "--step-size", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.step_size; },
       nullptr, [](TrainConfig& c, const json& v) { c.schedule.step_size = v.get<int64_t>(); }},
      {"/schedule/milestones", "--milestones", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.milestones; }, nullptr,
       [](TrainConfig& c, const json& v) { c.schedule.milestones = v.get<std::vector<int64_t>>(); }},
      {"/schedule/gamma", "--gamma", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.gamma; }, nullptr,
       [](TrainConfig& c, const json& v) { c.schedule.gamma = v.get<double>(); }},
      {"/schedule/min_lr", "schedule min_lr", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.min_lr; },
       nullptr, [](TrainConfig& c, const json& v) { c.schedule.min_lr = v.get<double>(); }},
      {"/schedule/total_steps", "--epochs", Compared::with_cosine,
       [](const RunFacts& f) -> json { return f.schedule.total_steps; }},
      {"/schedule/warmup_steps", "--warmup-steps", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.warmup_steps; }, nullptr,
       [](TrainConfig& c, const json& v) { c.schedule.warmup_steps = v.get<int64_t>(); }},
      {"/schedule/warmup_start_factor", "warm-up start factor", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.warmup_start_factor; }, nullptr,
       [](TrainConfig& c, const json& v) { c.schedule.warmup_start_factor = v.get<double>(); }},
  };
  return table;
}

// The option a flag names ("--lr" -> "lr"); empty for a setting no option sets on its own.
std::string option_of(std::string_view flag) {
  if (flag.substr(0, 2) != "--" || flag.find(' ') != std::string_view::npos) return {};
  return std::string(flag.substr(2));
}

bool must_match(Compared compared, const json& current) {
  const bool sgd = current["optimizer"]["kind"] == "sgd";
  switch (compared) {
    case Compared::no: return false;
    case Compared::yes: return true;
    case Compared::with_sgd: return sgd;
    case Compared::with_adam: return !sgd;
    case Compared::with_cosine: return current["schedule"]["kind"] == "cosine";
  }
  return true;
}

json at(const json& j, const char* key) {
  const json::json_pointer ptr(key);
  return j.contains(ptr) ? j[ptr] : json();
}

}  // namespace

std::string run_config_json(const TrainConfig& config, const ScheduleOptions& schedule, const std::string& augment,
                            int64_t train_count) {
  const RunFacts facts{config, schedule, augment, train_count};
  json j = json::object();
  for (const RunSetting& s : settings()) j[json::json_pointer(s.key)] = s.value(facts);
  return j.dump();
}

namespace {

// The stored run_config as a JSON object; IoError (prefixed by the caller) when it is not one.
json parse_stored(const std::string& text) {
  try {
    check_json_depth(text, "run_config");
  } catch (const ConfigError& e) {
    throw IoError(std::string("the checkpoint's run_config is not usable: ") + e.what());
  }
  const json stored = json::parse(text, nullptr, false);
  if (stored.is_discarded() || !stored.is_object()) throw IoError("the checkpoint's run_config is not valid JSON");
  return stored;
}

}  // namespace

std::vector<std::string> run_config_differences(const std::string& stored_text, const std::string& current_text) {
  const json stored = parse_stored(stored_text), current = json::parse(current_text, nullptr, false);
  std::vector<std::string> out;
  for (const RunSetting& s : settings()) {
    if (!must_match(s.compared, current)) continue;
    json was = at(stored, s.key);
    if (was.is_null() && s.absent_as) was = json::parse(s.absent_as);
    // Before the micro-batch size was resolved, 0 stood for the whole batch.
    if (std::string_view(s.key) == "/micro_batch" && was == 0) was = at(stored, "/batch");
    const json now = at(current, s.key);
    if (was == now) continue;
    if (s.compared == Compared::with_cosine) {  // say it in the unit of the flag
      const json epochs_now = at(current, "/epochs"), epochs_was = at(stored, "/epochs");
      if (epochs_now == epochs_was) continue;  // a different step count is reported on its own line
      out.push_back("--epochs: given " + epochs_now.dump() + ", the checkpoint has " + echo(epochs_was.dump()) +
                    " (the cosine schedule anneals over all epochs, so this would change the learning rate of the "
                    "steps still to come; to train longer, start a new run from the weights with --init)");
    } else if (!option_of(s.flag).empty()) {
      out.push_back(std::string(s.flag) + ": given " + echo(now.dump()) + ", the checkpoint has " + echo(was.dump()));
    } else {
      out.push_back(std::string(s.flag) + ": this run has " + echo(now.dump()) + ", the checkpoint " + echo(was.dump()));
    }
  }
  return out;
}

TrainConfig with_stored_settings(TrainConfig config, const Checkpoint& checkpoint, const std::string& where) {
  if (!config.given) return config;
  const std::set<std::string>& given = *config.given;
  json stored;
  try {
    stored = parse_stored(checkpoint.run_config);
  } catch (const IoError& e) {
    throw IoError(where + ": " + e.what());
  }
  for (const RunSetting& s : settings()) {
    if (!s.restore) continue;
    if (const std::string option = option_of(s.flag); !option.empty() && given.count(option)) continue;
    json value = at(stored, s.key);
    if (value.is_null() && s.absent_as) value = json::parse(s.absent_as);
    if (value.is_null()) continue;  // a checkpoint older than the setting: the default stays
    try {
      s.restore(config, value);
    } catch (const std::exception&) {  // a wrong JSON type, an unknown precision
      throw IoError(where + ": run_config " + s.key + ": " + echo(value.dump()) + " is not a usable value of " + s.flag);
    }
  }
  const json stored_model = at(stored, "/model");
  if (!given.count("model")) {
    if (stored_model.is_string()) config.model = stored_model.get<std::string>();
    config.model_spec = checkpoint.model_spec;
  } else {
    // A different model is told before the data is read (the model might not even fit the data); the same
    // spec under another name or path is the same model. "input" is the data's shape, filled in by the run.
    json mine = json::parse(resolve_model(config.model).text, nullptr, false);
    json theirs = json::parse(checkpoint.model_spec, nullptr, false);
    if (mine.is_object()) mine.erase("input");
    if (theirs.is_object()) theirs.erase("input");
    if (mine != theirs)
      throw UsageError(where + ": cannot resume with settings that differ from the checkpoint's (leave these flags "
                       "out to continue with the checkpoint's, or start a new run from its weights with --init " +
                       where + "):\n  --model: given \"" + echo(config.model) + "\", the checkpoint has " +
                       (stored_model.is_string() ? echo(stored_model.dump()) : std::string("another model")));
  }
  if (!given.count("classes")) config.class_names = checkpoint.class_names;
  // A relative data path is relative to where the run started.
  if (!given.count("data") && !config.data.empty() && !std::filesystem::exists(config.data))
    throw IoError(where + ": the checkpoint's data " + echo(config.data) + " is not there (from " +
                  echo(std::filesystem::current_path().string()) + "); give --data DIR|FILE.h5 to say where it is now");
  return config;
}

std::string precision_change(const std::string& stored_text, const std::string& current_text) {
  const json stored = json::parse(stored_text, nullptr, false), current = json::parse(current_text, nullptr, false);
  if (!stored.is_object() || !current.is_object()) return {};
  const json was = stored.contains("precision") ? stored["precision"] : json("fp32");
  const json now = current.contains("precision") ? current["precision"] : json("fp32");
  if (was == now || !was.is_string() || !now.is_string()) return {};
  return "the checkpoint was trained in " + echo(was.get<std::string>()) + "; this run continues in " +
         now.get<std::string>() + " from its fp32 master weights and optimizer state (the results differ from an "
         "uninterrupted " + echo(was.get<std::string>()) + " run)";
}

}  // namespace stride
