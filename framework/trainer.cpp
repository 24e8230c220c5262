#include "framework/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <ostream>

#include "framework/errors.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"
#include "io/checkpoint.hpp"
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

TrainResult train(const TrainConfig& config, std::ostream& log) {
  validate(config);
  const auto t_start = Clock::now();
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
  const int64_t num_classes = net.output_shape().numel();
  if (class_names.size() != static_cast<size_t>(num_classes)) {
    class_names.clear();
    for (int64_t k = 0; k < num_classes; ++k) class_names.push_back(std::to_string(k));
  }
  net.init(config.seed);
  if (!config.init_weights.empty()) restore_parameters(net, read_checkpoint(config.init_weights), config.init_weights);

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

  namespace fs = std::filesystem;
  fs::create_directories(config.out);
  const std::string metrics_path = (fs::path(config.out) / "metrics.jsonl").string();
  std::ofstream metrics(metrics_path, std::ios::trunc);
  if (!metrics) throw IoError(metrics_path + ": cannot open for writing");

  const bool bar = config.progress && ::isatty(STDOUT_FILENO);
  log << "stride: training " << model.where << " (" << net.learnable_count() << " params) on " << info.source << ": "
      << n << " train / " << test_src->info().count << " test images " << info.channels << "x" << info.height << "x"
      << info.width << ", " << config.epochs << " epochs of " << steps_per_epoch << " steps (batch " << config.batch
      << "), " << optimizer->kind() << ", " << describe(schedule) << ", augment " << augment_name(augment)
      << ", seed " << config.seed << "\n";

  // Two batch buffers: the next batch is assembled by TBB tasks while the current one trains.
  Tensor xs[2];
  std::vector<int32_t> ys[2];
  Tensor dlogits;
  int64_t step = 0;
  double last_loss = 0;
  EvalResult test;
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    const auto e32 = static_cast<uint32_t>(epoch);
    const std::vector<int64_t> order = epoch_order(n, config.seed, e32, true);
    auto batch_indices = [&](int64_t s) {
      const int64_t first = s * config.batch;
      return std::span<const int64_t>(order).subspan(static_cast<size_t>(first),
                                                      static_cast<size_t>(std::min(config.batch, n - first)));
    };
    train_data.assemble(batch_indices(0), e32, xs[0], ys[0]);
    const auto t_epoch = Clock::now();
    auto t_window = Clock::now();
    double epoch_loss = 0, window_loss = 0;
    int64_t epoch_correct = 0, window_correct = 0, window_count = 0, window_steps = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
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
      if (!std::isfinite(loss))
        throw Error("training diverged: loss is " + std::to_string(loss) + " at epoch " + std::to_string(epoch + 1) +
                    " step " + std::to_string(step + 1) + " (try a lower --lr)");
      const int64_t correct = count_correct(logits, ys[cur]);
      net.backward(dlogits, ctx);
      optimizer->step(net.params(), net.grads(), lr);
      if (next.valid()) next.get();

      const int64_t count = static_cast<int64_t>(ys[cur].size());
      last_loss = loss;
      epoch_loss += loss;
      window_loss += loss;
      epoch_correct += correct;
      window_correct += correct;
      window_count += count;
      ++window_steps;
      if ((s + 1) % config.log_every == 0 || s + 1 == steps_per_epoch) {
        const double elapsed = seconds_since(t_window);
        const double img_s = static_cast<double>(window_count) / std::max(elapsed, 1e-9);
        const double done = static_cast<double>(s + 1) / static_cast<double>(steps_per_epoch);
        const double epoch_elapsed = seconds_since(t_epoch);
        const double eta = epoch_elapsed / done * (1 - done) +
                           epoch_elapsed / done * static_cast<double>(config.epochs - epoch - 1);
        json line = {{"kind", "step"},          {"epoch", epoch + 1},
                     {"step", step + 1},        {"loss", window_loss / static_cast<double>(window_steps)},
                     {"train_acc", static_cast<double>(window_correct) / static_cast<double>(window_count)},
                     {"lr", lr},                {"img_per_s", img_s},
                     {"seconds", seconds_since(t_start)}};
        metrics << line.dump() << "\n";
        char text[256];
        std::snprintf(text, sizeof text, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.3f lr %.5f %.0f img/s ETA %s",
                      static_cast<long long>(epoch + 1), static_cast<long long>(config.epochs),
                      static_cast<long long>(s + 1), static_cast<long long>(steps_per_epoch),
                      window_loss / static_cast<double>(window_steps),
                      static_cast<double>(window_correct) / static_cast<double>(window_count), lr, img_s,
                      format_eta(eta).c_str());
        if (bar) {
          const int width = 24, filled = static_cast<int>(done * width);
          log << "\r[" << std::string(static_cast<size_t>(filled), '=') << std::string(static_cast<size_t>(width - filled), ' ')
              << "] " << text << "\033[K" << std::flush;
        } else {
          log << text << "\n";
        }
        window_loss = 0;
        window_correct = window_count = window_steps = 0;
        t_window = Clock::now();
      }
    }
    const double epoch_seconds = seconds_since(t_epoch);
    test = evaluate(net, test_data, config.eval_batch, num_classes);
    json line = {{"kind", "epoch"},
                 {"epoch", epoch + 1},
                 {"step", step},
                 {"loss", epoch_loss / static_cast<double>(steps_per_epoch)},
                 {"train_acc", static_cast<double>(epoch_correct) / static_cast<double>(n)},
                 {"test_acc", test.accuracy()},
                 {"test_loss", test.loss},
                 {"lr", lr_at(schedule, step - 1)},
                 {"img_per_s", static_cast<double>(n) / std::max(epoch_seconds, 1e-9)},
                 {"seconds", seconds_since(t_start)}};
    metrics << line.dump() << "\n" << std::flush;
    if (bar) log << "\r\033[K";
    char text[256];
    std::snprintf(text, sizeof text, "epoch %lld/%lld: loss %.4f train acc %.4f test acc %.4f (%.1f s, %.0f img/s)\n",
                  static_cast<long long>(epoch + 1), static_cast<long long>(config.epochs),
                  epoch_loss / static_cast<double>(steps_per_epoch),
                  static_cast<double>(epoch_correct) / static_cast<double>(n), test.accuracy(), epoch_seconds,
                  static_cast<double>(n) / std::max(epoch_seconds, 1e-9));
    log << text << std::flush;
  }

  Checkpoint ckpt;
  ckpt.stride_version = STRIDE_VERSION;
  ckpt.epoch = config.epochs;
  ckpt.step = step;
  ckpt.seed = config.seed;
  ckpt.wall_time = seconds_since(t_start);
  ckpt.model_spec = spec_with_input(model.text, net.input_shape());
  ckpt.norm_mean = norm.mean;
  ckpt.norm_std = norm.stddev;
  ckpt.class_names = class_names;
  store_parameters(net, ckpt);
  store_optimizer(*optimizer, net, ckpt);
  TrainResult result;
  result.final_path = (fs::path(config.out) / "final.h5").string();
  write_checkpoint(result.final_path, ckpt);
  result.metrics_path = metrics_path;
  result.test_accuracy = test.accuracy();
  result.final_loss = last_loss;
  result.steps = step;
  return result;
}

}  // namespace stride
