#include "framework/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <ostream>

#include "framework/core/errors.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"
#include "io/checkpoint.hpp"
#include "io/checkpoint_dir.hpp"
#include "io/detect.hpp"
#include "layers/softmax_cross_entropy.hpp"

namespace stride {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_eta(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

void validate(const TrainConfig& c) {
  auto positive = [](const char* flag, int64_t v) {
    if (v < 1) throw ConfigError(std::string(flag) + ": expected a value >= 1, got " + std::to_string(v));
  };
  positive("--epochs", c.epochs);
  positive("--batch", c.batch);
  positive("--log-every", c.log_every);
  positive("--eval-batch", c.eval_batch);
  if (!(c.lr > 0) || !std::isfinite(c.lr))
    throw ConfigError("--lr: expected a positive number, got " + std::to_string(c.lr));
  if (c.limit_train < 0 || c.limit_test < 0) throw ConfigError("--limit-train/--limit-test: expected >= 0");
  if (c.data.empty()) throw ConfigError("--data: required (a CIFAR-10 or IDX directory, or an HDF5 file)");
}

}  // namespace

EvalResult evaluate(Network& net, const BatchAssembler& data, int64_t batch, int64_t num_classes) {
  EvalResult r;
  const int64_t n = data.source().info().count;
  r.confusion.assign(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  const std::vector<int64_t> order = epoch_order(n, 0, 0, false);
  Tensor x;
  std::vector<int32_t> labels;
  const RunContext ctx{Mode::eval, 0, 0, 0};
  double loss_sum = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t count = std::min(batch, n - first);
    data.assemble(std::span<const int64_t>(order).subspan(static_cast<size_t>(first), static_cast<size_t>(count)), 0,
                  x, labels);
    const Tensor& logits = net.forward(x, ctx);
    loss_sum += softmax_cross_entropy(logits, labels, nullptr) * static_cast<double>(count);
    const int64_t k = logits.shape().per_sample();
    for (int64_t i = 0; i < count; ++i) {
      const float* row = logits.data() + i * k;
      const int64_t pred = std::max_element(row, row + k) - row;
      const int32_t truth = labels[static_cast<size_t>(i)];
      if (pred == truth) ++r.correct;
      if (truth < num_classes && pred < num_classes) ++r.confusion[static_cast<size_t>(truth)][static_cast<size_t>(pred)];
    }
  }
  r.count = n;
  r.loss = n ? loss_sum / static_cast<double>(n) : 0.0;
  return r;
}


namespace {

// The flag a run-config key is set with, for messages.
std::string flag_of(const std::string& key) {
  static const std::map<std::string, std::string> flags = {
      {"/batch", "--batch"}, {"/seed", "--seed"}, {"/augment", "--augment"}, {"/train_count", "--limit-train / --data (training samples)"},
      {"/optimizer/kind", "--optimizer"}, {"/optimizer/momentum", "--momentum"}, {"/optimizer/nesterov", "--nesterov"},
      {"/optimizer/weight_decay", "--weight-decay"}, {"/optimizer/decay_all", "--no-decay-bias-bn"},
      {"/optimizer/beta1", "--beta1"}, {"/optimizer/beta2", "--beta2"}, {"/optimizer/eps", "optimizer eps"},
      {"/schedule/kind", "--schedule"}, {"/schedule/base_lr", "--lr"}, {"/schedule/step_size", "--step-size"},
      {"/schedule/milestones", "--milestones"}, {"/schedule/gamma", "--gamma"}, {"/schedule/min_lr", "schedule min_lr"},
      {"/schedule/total_steps", "--epochs (the cosine schedule anneals over all epochs)"},
      {"/schedule/steps_per_epoch", "steps per epoch (--batch / training samples)"},
      {"/schedule/warmup_steps", "--warmup-steps"}, {"/schedule/warmup_start_factor", "warm-up start factor"}};
  auto it = flags.find(key);
  return it == flags.end() ? key : it->second;
}

// Keeps the lines of metrics.jsonl up to and including global step `step` (what the checkpoint had seen) and
// drops the rest, including a half-written last line of a killed run, so the resumed run appends after them.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) break;
    if (j["step"].get<int64_t>() > step) break;
    kept += line + "\n";
  }
  in.close();
  write_text_atomically(path, kept);
}

}  // namespace

std::string run_config_json(const TrainConfig& c, const ScheduleOptions& s, const std::string& augment,
                            int64_t train_count) {
  const OptimizerOptions& o = c.optimizer;
  json j = {{"model", c.model},
            {"data", c.data},
            {"train_count", train_count},
            {"epochs", c.epochs},
            {"batch", c.batch},
            {"seed", c.seed},
            {"augment", augment},
            {"limit_train", c.limit_train},
            {"limit_test", c.limit_test},
            {"log_every", c.log_every},
            {"eval_batch", c.eval_batch},
            {"optimizer",
             {{"kind", o.kind}, {"momentum", o.momentum}, {"nesterov", o.nesterov}, {"weight_decay", o.weight_decay},
              {"decay_all", o.decay_all}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}}},
            {"schedule",
             {{"kind", s.kind}, {"base_lr", s.base_lr}, {"steps_per_epoch", s.steps_per_epoch}, {"step_size", s.step_size},
              {"milestones", s.milestones}, {"gamma", s.gamma}, {"min_lr", s.min_lr}, {"total_steps", s.total_steps},
              {"warmup_steps", s.warmup_steps}, {"warmup_start_factor", s.warmup_start_factor}}}};
  return j.dump();
}

std::vector<std::string> run_config_differences(const std::string& stored_text, const std::string& current_text) {
  const json stored = json::parse(stored_text, nullptr, false), current = json::parse(current_text, nullptr, false);
  if (stored.is_discarded() || !stored.is_object()) return {"the checkpoint's run_config is not valid JSON"};
  std::vector<std::string> out;
  const bool cosine = current["schedule"]["kind"] == "cosine";
  for (const char* key : {"/train_count", "/batch", "/seed", "/augment", "/optimizer/kind", "/optimizer/momentum",
                          "/optimizer/nesterov", "/optimizer/weight_decay", "/optimizer/decay_all", "/optimizer/beta1",
                          "/optimizer/beta2", "/optimizer/eps", "/schedule/kind", "/schedule/base_lr",
                          "/schedule/steps_per_epoch", "/schedule/step_size", "/schedule/milestones", "/schedule/gamma",
                          "/schedule/min_lr", "/schedule/total_steps", "/schedule/warmup_steps",
                          "/schedule/warmup_start_factor"}) {
    const json::json_pointer ptr(key);
    if (std::string(key) == "/schedule/total_steps" && !cosine) continue;  // only cosine depends on it
    // SGD's settings do not matter to Adam and the other way round.
    const std::string kind = current["optimizer"]["kind"];
    const std::string k(key);
    if (kind == "sgd" && (k == "/optimizer/beta1" || k == "/optimizer/beta2" || k == "/optimizer/eps")) continue;
    if (kind != "sgd" && (k == "/optimizer/momentum" || k == "/optimizer/nesterov")) continue;
    const json a = stored.contains(ptr) ? stored[ptr] : json(), b = current.contains(ptr) ? current[ptr] : json();
    if (a == b) continue;
    if (k == "/schedule/total_steps")  // say it in the unit of the flag
      out.push_back(flag_of(key) + ": this run has " + current.value("epochs", json()).dump() + ", the checkpoint " +
                    stored.value("epochs", json()).dump());
    else
      out.push_back(flag_of(key) + ": this run has " + b.dump() + ", the checkpoint " + a.dump());
  }
  return out;
}

TrainResult train(const TrainConfig& config_in, std::ostream& log) {
  TrainConfig config = config_in;
  validate(config);
  if (config.checkpoint_every < 0 || config.checkpoint_epochs < 0)
    throw ConfigError("--checkpoint-every/--checkpoint-epochs: expected >= 0");
  if (config.keep < 1) throw ConfigError("--keep: expected a value >= 1, got " + std::to_string(config.keep));
  if (!config.resume.empty() && !config.init_weights.empty())
    throw ConfigError("--resume and --init: give one (--resume continues a run, --init starts a new one from weights)");
  const auto t_start = Clock::now();

  // Find the checkpoint first: a missing or corrupt one should fail before the data is read.
  std::optional<ResumePoint> resume;
  if (!config.resume.empty()) {
    resume = find_resume_point(config.resume);
    for (const auto& w : resume->warnings) std::cerr << "warning: " << w << "\n";
    if (!resume->warnings.empty()) std::cerr << "warning: resuming from the older " << resume->path << "\n";
    if (!resume->checkpoint.has_progress)
      throw IoError(resume->path + ": a version-" + std::to_string(resume->checkpoint.version) +
                    " checkpoint cannot be resumed (use --init to start from its weights)");
    if (config.out.empty()) config.out = resume->run_dir;
  }
  if (config.out.empty()) config.out = "runs/latest";

  DatasetSplits data = open_dataset(config.data);
  std::unique_ptr<SampleSource> train_limited, test_limited;
  const SampleSource* train_src = data.train.get();
  const SampleSource* test_src = data.test.get();
  if (config.limit_train) train_src = (train_limited = std::make_unique<PrefixSource>(*train_src, config.limit_train)).get();
  if (config.limit_test) test_src = (test_limited = std::make_unique<PrefixSource>(*test_src, config.limit_test)).get();
  const DatasetInfo& info = train_src->info();
  if (info.count == 0) throw ConfigError(config.data + ": the training split is empty");
  std::vector<std::string> class_names = config.class_names.empty() ? info.class_names : config.class_names;

  ModelSource model = resolve_model(config.model);
  Network net = build_network(model.text, Shape{info.channels, info.height, info.width}, model.where);
  const std::string model_spec = spec_with_input(model.text, net.input_shape());
  const int64_t num_classes = net.output_shape().numel();
  if (class_names.size() != static_cast<size_t>(num_classes)) {
    class_names.clear();
    for (int64_t k = 0; k < num_classes; ++k) class_names.push_back(std::to_string(k));
  }
  net.init(config.seed);
  if (!config.init_weights.empty()) restore_parameters(net, read_weights(config.init_weights), config.init_weights);

  const Augment augment = config.augment == "auto"
                              ? (info.channels == 3 && info.height == 32 && info.width == 32 ? Augment::crop_flip : Augment::none)
                              : parse_augment(config.augment);
  const Normalization norm = compute_normalization(*train_src);
  const BatchAssembler train_data(*train_src, norm, augment, config.seed);
  const BatchAssembler test_data(*test_src, norm, Augment::none, config.seed);

  std::vector<OptimizerParam> opt_params;
  for (const auto& e : net.param_entries())
    if (e.role == ParamRole::learnable) opt_params.push_back({e.name, e.offset, e.size, e.weight_decay});
  auto optimizer = Optimizer::create(config.optimizer, opt_params, net.learnable_count());

  const int64_t n = info.count;
  const int64_t steps_per_epoch = (n + config.batch - 1) / config.batch;
  ScheduleOptions schedule = config.schedule;
  schedule.base_lr = config.lr;
  schedule.steps_per_epoch = steps_per_epoch;
  schedule.total_steps = steps_per_epoch * config.epochs;
  lr_at(schedule, 0);  // validates
  const std::string run_config = run_config_json(config, schedule, augment_name(augment), n);

  // Where the loop starts, and the metrics sums of the epoch in progress.
  int64_t start_epoch = 0, start_s = 0, step = 0;
  double wall_offset = 0;
  TrainingProgress progress;
  if (resume) {
    const Checkpoint& ck = resume->checkpoint;
    const std::string& where = resume->path;
    // The model first: a different model is the likeliest mistake, and the settings would differ too.
    const json stored_spec = json::parse(ck.model_spec, nullptr, false), spec = json::parse(model_spec, nullptr, false);
    if (stored_spec != spec) {
      std::string what;
      const json patch = json::diff(stored_spec, spec);
      for (size_t i = 0; i < patch.size() && i < 3; ++i)
        what += std::string(i ? ", " : "") + patch[i]["op"].get<std::string>() + " " + patch[i]["path"].get<std::string>();
      throw ConfigError(where + ": the checkpoint's model differs from --model " + config.model + " (" + what +
                        "); resume with the checkpoint's model, or use --init to start a new run from its weights");
    }
    if (ck.seed != config.seed)
      throw ConfigError(where + ": --seed: this run has " + std::to_string(config.seed) + ", the checkpoint " +
                        std::to_string(ck.seed));
    if (ck.optimizer_kind != optimizer->kind())
      throw ConfigError(where + ": --optimizer: this run has \"" + optimizer->kind() + "\", the checkpoint \"" +
                        ck.optimizer_kind + "\" (use --init to start from its weights with a fresh optimizer)");
    const auto diffs = run_config_differences(ck.run_config, run_config);
    if (!diffs.empty()) {
      std::string text;
      for (const auto& d : diffs) text += "\n  " + d;
      throw ConfigError(where + ": cannot resume with different settings (pass the checkpoint's, or use --init to "
                        "start a new run from its weights):" + text);
    }
    if (ck.norm_mean != norm.mean || ck.norm_std != norm.stddev)
      throw ConfigError(where + ": the training data differs from the checkpoint's (its per-channel mean/std do not "
                        "match --data " + config.data + ")");
    start_epoch = ck.epoch;
    start_s = ck.samples_seen / config.batch;
    step = ck.step;
    if (start_s * config.batch != ck.samples_seen || start_s >= steps_per_epoch ||
        step != start_epoch * steps_per_epoch + start_s)
      throw IoError(where + ": position (epoch " + std::to_string(ck.epoch) + ", samples_seen " +
                    std::to_string(ck.samples_seen) + ", step " + std::to_string(ck.step) +
                    ") is not a step boundary of this run (" + std::to_string(steps_per_epoch) + " steps of " +
                    std::to_string(config.batch) + " per epoch)");
    if (start_epoch > config.epochs)
      throw ConfigError(where + ": --epochs " + std::to_string(config.epochs) + ": the checkpoint has done " +
                        std::to_string(start_epoch) + " epochs already (--epochs is the total)");
    restore_parameters(net, ck, where);
    restore_optimizer(*optimizer, net, ck, where);
    progress = ck.progress;
    wall_offset = ck.wall_time;
  }

  namespace fs = std::filesystem;
  fs::create_directories(config.out);
  const std::string metrics_path = (fs::path(config.out) / "metrics.jsonl").string();
  if (resume) truncate_metrics(metrics_path, step);
  std::ofstream metrics(metrics_path, resume ? std::ios::app : std::ios::trunc);
  if (!metrics) throw IoError(metrics_path + ": cannot open for writing");
  const CheckpointDir checkpoints(config.out);

  const bool bar = config.progress && ::isatty(STDOUT_FILENO);
  log << "stride: training " << model.where << " (" << net.learnable_count() << " params) on " << info.source << ": "
      << n << " train / " << test_src->info().count << " test images " << info.channels << "x" << info.height << "x"
      << info.width << ", " << config.epochs << " epochs of " << steps_per_epoch << " steps (batch " << config.batch
      << "), " << optimizer->kind() << ", " << describe(schedule) << ", augment " << augment_name(augment)
      << ", seed " << config.seed << "\n";
  if (resume)
    log << "stride: resuming from " << resume->path << " at epoch " << start_epoch + 1 << " step " << step << "\n";

  TrainResult result;
  result.run_dir = config.out;
  result.metrics_path = metrics_path;
  result.test_accuracy = progress.test_accuracy;
  // A full checkpoint of the state after `step` steps; `epoch`/`samples` is the position of the next step.
  auto make_checkpoint = [&](int64_t epoch, int64_t samples) {
    Checkpoint ck;
    ck.stride_version = STRIDE_VERSION;
    ck.epoch = epoch;
    ck.step = step;
    ck.samples_seen = samples;
    ck.seed = config.seed;
    ck.wall_time = wall_offset + seconds_since(t_start);
    ck.model_spec = model_spec;
    ck.run_config = run_config;
    ck.norm_mean = norm.mean;
    ck.norm_std = norm.stddev;
    ck.class_names = class_names;
    ck.has_progress = true;
    ck.progress = progress;
    ck.progress.next_lr = lr_at(schedule, step);
    store_parameters(net, ck);
    store_optimizer(*optimizer, net, ck);
    return ck;
  };
  double checkpoint_seconds = 0;  // reported at the end: the cost of checkpointing
  // `required`: the checkpoint a stop or the end of the run depends on; its failure ends the run with the
  // IoError. A periodic one that fails (a full disk) is reported and training goes on: the earlier
  // checkpoints are intact and the next one may succeed once space is freed.
  auto save = [&](int64_t epoch, int64_t samples, bool required) {
    // metrics.jsonl must hold every line the checkpoint has seen before the checkpoint exists.
    metrics.flush();
    const auto t0 = Clock::now();
    try {
      result.checkpoint_path = checkpoints.save(make_checkpoint(epoch, samples), config.keep);
    } catch (const IoError& e) {
      if (required) throw;
      if (bar) log << "\r\033[K";
      std::cerr << "warning: " << e.what() << "; training continues\n";
      return;
    }
    const double took = seconds_since(t0);
    checkpoint_seconds += took;
    char text[64];
    std::snprintf(text, sizeof text, " (%.1f ms)\n", took * 1e3);
    if (bar) log << "\r\033[K";
    log << "stride: checkpoint " << result.checkpoint_path << text << std::flush;
  };
  auto stop_requested = [&] {
    return (config.stop_flag && *config.stop_flag != 0) || (config.stop_after_step > 0 && step == config.stop_after_step);
  };

  // Two batch buffers: the next batch is assembled by TBB tasks while the current one trains.
  Tensor xs[2];
  std::vector<int32_t> ys[2];
  Tensor dlogits;
  double last_loss = 0;
  for (int64_t epoch = start_epoch; epoch < config.epochs; ++epoch) {
    const auto e32 = static_cast<uint32_t>(epoch);
    const std::vector<int64_t> order = epoch_order(n, config.seed, e32, true);
    auto batch_indices = [&](int64_t s) {
      const int64_t first = s * config.batch;
      return std::span<const int64_t>(order).subspan(static_cast<size_t>(first),
                                                      static_cast<size_t>(std::min(config.batch, n - first)));
    };
    const int64_t first_s = epoch == start_epoch ? start_s : 0;
    train_data.assemble(batch_indices(first_s), e32, xs[first_s & 1], ys[first_s & 1]);
    const auto t_epoch = Clock::now();
    auto t_window = Clock::now();
    for (int64_t s = first_s; s < steps_per_epoch; ++s) {
      const int cur = static_cast<int>(s & 1);
      std::future<void> next;
      if (s + 1 < steps_per_epoch)
        next = std::async(std::launch::async, [&, s] {
          train_data.assemble(batch_indices(s + 1), e32, xs[1 - cur], ys[1 - cur]);
        });
      const double lr = lr_at(schedule, step);
      const RunContext ctx{Mode::train, config.seed, e32, s * config.batch};
      net.zero_grad();
      const Tensor& logits = net.forward(xs[cur], ctx);
      const double loss = softmax_cross_entropy(logits, ys[cur], &dlogits);
      if (!std::isfinite(loss)) {
        if (next.valid()) next.get();
        throw Error("training diverged: loss is " + std::to_string(loss) + " at epoch " + std::to_string(epoch + 1) +
                    " step " + std::to_string(step + 1) + " (try a lower --lr)");
      }
      const int64_t correct = count_correct(logits, ys[cur]);
      net.backward(dlogits, ctx);
      optimizer->step(net.params(), net.grads(), lr);
      if (next.valid()) next.get();
      ++step;

      const int64_t count = static_cast<int64_t>(ys[cur].size());
      last_loss = loss;
      progress.epoch_loss_sum += loss;
      progress.window_loss_sum += loss;
      progress.epoch_correct += correct;
      progress.window_correct += correct;
      progress.window_count += count;
      ++progress.window_steps;
      if ((s + 1) % config.log_every == 0 || s + 1 == steps_per_epoch) {
        const double elapsed = seconds_since(t_window);
        const double img_s = static_cast<double>(progress.window_count) / std::max(elapsed, 1e-9);
        const double done = static_cast<double>(s + 1 - first_s) / static_cast<double>(steps_per_epoch - first_s);
        const double epoch_elapsed = seconds_since(t_epoch);
        const double per_epoch = epoch_elapsed / done * static_cast<double>(steps_per_epoch - first_s) /
                                 static_cast<double>(steps_per_epoch);
        const double eta = epoch_elapsed / done * (1 - done) + per_epoch * static_cast<double>(config.epochs - epoch - 1);
        const double window_loss = progress.window_loss_sum / static_cast<double>(progress.window_steps);
        const double window_acc = static_cast<double>(progress.window_correct) / static_cast<double>(progress.window_count);
        json line = {{"kind", "step"},      {"epoch", epoch + 1}, {"step", step},
                     {"loss", window_loss}, {"train_acc", window_acc}, {"lr", lr},
                     {"img_per_s", img_s},  {"seconds", wall_offset + seconds_since(t_start)}};
        metrics << line.dump() << "\n";
        char text[256];
        std::snprintf(text, sizeof text, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.3f lr %.5f %.0f img/s ETA %s",
                      static_cast<long long>(epoch + 1), static_cast<long long>(config.epochs),
                      static_cast<long long>(s + 1), static_cast<long long>(steps_per_epoch), window_loss, window_acc,
                      lr, img_s, format_eta(eta).c_str());
        if (bar) {
          const int width = 24, filled = static_cast<int>(static_cast<double>(s + 1) / static_cast<double>(steps_per_epoch) * width);
          log << "\r[" << std::string(static_cast<size_t>(filled), '=') << std::string(static_cast<size_t>(width - filled), ' ')
              << "] " << text << "\033[K" << std::flush;
        } else {
          log << text << "\n";
        }
        progress.window_loss_sum = 0;
        progress.window_correct = progress.window_count = progress.window_steps = 0;
        t_window = Clock::now();
      }
      // Mid-epoch checkpoints; one due at the epoch's last step waits for the test evaluation below so that
      // it is taken at the epoch boundary.
      if (s + 1 < steps_per_epoch) {
        const bool stop = stop_requested();
        if (stop || (config.checkpoint_every && step % config.checkpoint_every == 0))
          save(epoch, (s + 1) * config.batch, stop);
        if (stop) {
          if (bar) log << "\n";
          result.stopped = true;
          result.stopped_epoch = epoch + 1;
          result.steps = step;
          result.final_loss = last_loss;
          return result;
        }
      }
    }
    const double epoch_seconds = seconds_since(t_epoch);
    const EvalResult test = evaluate(net, test_data, config.eval_batch, num_classes);
    const int64_t epoch_steps = steps_per_epoch, epoch_samples = n;
    const double epoch_loss = progress.epoch_loss_sum / static_cast<double>(epoch_steps);
    const double train_acc = static_cast<double>(progress.epoch_correct) / static_cast<double>(epoch_samples);
    const double img_s = static_cast<double>(n - first_s * config.batch) / std::max(epoch_seconds, 1e-9);
    json line = {{"kind", "epoch"},
                 {"epoch", epoch + 1},
                 {"step", step},
                 {"loss", epoch_loss},
                 {"train_acc", train_acc},
                 {"test_acc", test.accuracy()},
                 {"test_loss", test.loss},
                 {"lr", lr_at(schedule, step - 1)},
                 {"img_per_s", img_s},
                 {"seconds", wall_offset + seconds_since(t_start)}};
    metrics << line.dump() << "\n" << std::flush;
    if (bar) log << "\r\033[K";
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld: loss %.4f train acc %.4f test acc %.4f (%.1f s, %.0f img/s)\n",
                  static_cast<long long>(epoch + 1), static_cast<long long>(config.epochs), epoch_loss, train_acc,
                  test.accuracy(), epoch_seconds, img_s);
    log << text << std::flush;
    progress = TrainingProgress{};
    progress.test_accuracy = test.accuracy();
    progress.test_loss = test.loss;
    result.test_accuracy = test.accuracy();

    const bool last = epoch + 1 == config.epochs;
    const bool stop = stop_requested();
    if (stop || last || (config.checkpoint_every && step % config.checkpoint_every == 0) ||
        (config.checkpoint_epochs && (epoch + 1) % config.checkpoint_epochs == 0))
      save(epoch + 1, 0, stop || last);
    if (stop && !last) {
      result.stopped = true;
      result.stopped_epoch = epoch + 2;
      result.steps = step;
      result.final_loss = last_loss;
      return result;
    }
  }
  if (start_epoch >= config.epochs) log << "stride: the checkpoint has done all " << config.epochs << " epochs already\n";

  result.final_path = (fs::path(config.out) / "final.h5").string();
  write_checkpoint(result.final_path, make_checkpoint(config.epochs, 0));
  const double total = seconds_since(t_start);
  char text[160];
  std::snprintf(text, sizeof text, "stride: checkpoints took %.2f s of %.1f s (%.2f%%)\n", checkpoint_seconds, total,
                100.0 * checkpoint_seconds / std::max(total, 1e-9));
  log << text;
  result.final_loss = last_loss;
  result.steps = step;
  return result;
}

}  // namespace stride
