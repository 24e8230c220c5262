#include "framework/run_config.hpp"

#include <nlohmann/json.hpp>
#include <string_view>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

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
  no,           // informational (the data path, --epochs, logging)
  yes,
  with_sgd,     // only when the run uses SGD (momentum, Nesterov)
  with_adam,    // only when it uses Adam or AdamW (betas, eps)
  with_cosine,  // only when the cosine schedule anneals over it
};

struct RunSetting {
  const char* key;   // JSON pointer into run_config
  const char* flag;  // what the user sets it with, for messages
  Compared compared;
  json (*value)(const RunFacts&);
  // What a checkpoint written before this setting existed stands for (JSON text); nullptr: nothing.
  const char* absent_as = nullptr;
};

const OptimizerOptions& opt(const RunFacts& f) { return f.config.optimizer; }

// Every setting, in the order differences are reported.
const std::vector<RunSetting>& settings() {
  static const std::vector<RunSetting> table = {
      {"/model", "--model", Compared::no, [](const RunFacts& f) -> json { return f.config.model; }},
      {"/data", "--data", Compared::no, [](const RunFacts& f) -> json { return f.config.data; }},
      {"/train_count", "--limit-train / --data (training samples)", Compared::yes,
       [](const RunFacts& f) -> json { return f.train_count; }},
      {"/epochs", "--epochs", Compared::no, [](const RunFacts& f) -> json { return f.config.epochs; }},
      {"/batch", "--batch", Compared::yes, [](const RunFacts& f) -> json { return f.config.batch; }},
      {"/micro_batch", "--micro-batch", Compared::yes, [](const RunFacts& f) -> json { return f.config.micro_batch; },
       "0"},
      {"/processes", "processes (mpirun -np)", Compared::no,
       [](const RunFacts& f) -> json { return f.config.hosts.empty() ? size_t{1} : f.config.hosts.size(); }},
      {"/hosts", "hosts", Compared::no, [](const RunFacts& f) -> json { return f.config.hosts; }},
      {"/seed", "--seed", Compared::yes, [](const RunFacts& f) -> json { return f.config.seed; }},
      // Not compared: a resume may switch precision; it continues from the fp32 master weights and says so
      // (precision_change).
      {"/precision", "--precision", Compared::no,
       [](const RunFacts& f) -> json { return precision_name(f.config.precision); }, "\"fp32\""},
      {"/augment", "--augment", Compared::yes, [](const RunFacts& f) -> json { return f.augment; }},
      {"/limit_train", "--limit-train", Compared::no, [](const RunFacts& f) -> json { return f.config.limit_train; }},
      {"/limit_test", "--limit-test", Compared::no, [](const RunFacts& f) -> json { return f.config.limit_test; }},
      {"/log_every", "--log-every", Compared::no, [](const RunFacts& f) -> json { return f.config.log_every; }},
      {"/eval_batch", "--eval-batch", Compared::no, [](const RunFacts& f) -> json { return f.config.eval_batch; }},
      {"/optimizer/kind", "--optimizer", Compared::yes, [](const RunFacts& f) -> json { return opt(f).kind; }},
      {"/optimizer/momentum", "--momentum", Compared::with_sgd, [](const RunFacts& f) -> json { return opt(f).momentum; }},
      {"/optimizer/nesterov", "--nesterov", Compared::with_sgd, [](const RunFacts& f) -> json { return opt(f).nesterov; }},
      {"/optimizer/weight_decay", "--weight-decay", Compared::yes,
       [](const RunFacts& f) -> json { return opt(f).weight_decay; }},
      {"/optimizer/decay_all", "--no-decay-bias-bn", Compared::yes,
       [](const RunFacts& f) -> json { return opt(f).decay_all; }},
      {"/optimizer/beta1", "--beta1", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).beta1; }},
      {"/optimizer/beta2", "--beta2", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).beta2; }},
      {"/optimizer/eps", "optimizer eps", Compared::with_adam, [](const RunFacts& f) -> json { return opt(f).eps; }},
      {"/schedule/kind", "--schedule", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.kind; }},
      {"/schedule/base_lr", "--lr", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.base_lr; }},
      {"/schedule/steps_per_epoch", "steps per epoch (--batch / training samples)", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.steps_per_epoch; }},
      {"/schedule/step_size", "--step-size", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.step_size; }},
      {"/schedule/milestones", "--milestones", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.milestones; }},
      {"/schedule/gamma", "--gamma", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.gamma; }},
      {"/schedule/min_lr", "schedule min_lr", Compared::yes, [](const RunFacts& f) -> json { return f.schedule.min_lr; }},
      {"/schedule/total_steps", "--epochs (the cosine schedule anneals over all epochs)", Compared::with_cosine,
       [](const RunFacts& f) -> json { return f.schedule.total_steps; }},
      {"/schedule/warmup_steps", "--warmup-steps", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.warmup_steps; }},
      {"/schedule/warmup_start_factor", "warm-up start factor", Compared::yes,
       [](const RunFacts& f) -> json { return f.schedule.warmup_start_factor; }},
  };
  return table;
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

std::vector<std::string> run_config_differences(const std::string& stored_text, const std::string& current_text) {
  try {
    check_json_depth(stored_text, "run_config");
  } catch (const ConfigError& e) {
    throw IoError(std::string("the checkpoint's run_config is not usable: ") + e.what());
  }
  const json stored = json::parse(stored_text, nullptr, false), current = json::parse(current_text, nullptr, false);
  if (stored.is_discarded() || !stored.is_object()) throw IoError("the checkpoint's run_config is not valid JSON");
  std::vector<std::string> out;
  for (const RunSetting& s : settings()) {
    if (!must_match(s.compared, current)) continue;
    json was = at(stored, s.key);
    if (was.is_null() && s.absent_as) was = json::parse(s.absent_as);
    // Before the micro-batch size was resolved, 0 stood for the whole batch.
    if (std::string_view(s.key) == "/micro_batch" && was == 0) was = at(stored, "/batch");
    const json now = at(current, s.key);
    if (was == now) continue;
    if (s.compared == Compared::with_cosine)  // say it in the unit of the flag
      out.push_back(std::string(s.flag) + ": this run has " + at(current, "/epochs").dump() + ", the checkpoint " +
                    echo(at(stored, "/epochs").dump()));
    else
      out.push_back(std::string(s.flag) + ": this run has " + echo(now.dump()) + ", the checkpoint " + echo(was.dump()));
  }
  return out;
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
