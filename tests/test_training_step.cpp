// One training step (framework/training_step) and its seams: micro-batches whose gradients add up to the
// whole batch's, the GradientReducer that sees this process's share of them, and the run-config table that
// makes --micro-batch part of what a resumed run must match.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "framework/model_spec.hpp"
#include "framework/run_config.hpp"
#include "framework/run_setup.hpp"
#include "framework/training_step.hpp"
#include "layers/batchnorm.hpp"
#include "layers/softmax_cross_entropy.hpp"
#include "tests/expect_error.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;

namespace {

// mlp has dropout, keyed by the sample's place in the epoch: micro-batches must see the same masks.
Network make_mlp(uint64_t seed) {
  Network net = build_network(*zoo_spec("mlp"), Shape{1, 6, 6});
  net.init(seed);
  return net;
}

std::unique_ptr<Optimizer> plain_sgd(const Network& net) {
  OptimizerOptions o;
  o.momentum = 0;
  return make_optimizer(o, net);
}

// A batch of n samples with values from a fixed formula and labels 0..9.
void batch(int64_t n, Tensor& x, std::vector<int32_t>& labels, int64_t first = 0) {
  x.resize(Shape{n, 1, 6, 6});
  labels.clear();
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i + first * 36));
  for (int64_t i = 0; i < n; ++i) labels.push_back(static_cast<int32_t>((first + i) * 7 % 10));
}

// Records what the step hands it: the exact sum of this process's micro-batches (as one process would reduce
// it); `other_loss` and `other_correct` play the rows of the micro-batches of other processes.
struct RecordingReducer final : GradientReducer {
  MicroBatchRange mine{0, 0};
  bool whole = true;  // share everything
  std::vector<std::vector<float>> seen;
  double other_loss = 0, other_correct = 0;
  ExactSum* sum = nullptr;
  std::span<float> grads;
  int64_t processes() const override { return 1; }
  MicroBatchRange share(int64_t micro_batches) const override {
    return whole ? MicroBatchRange{0, micro_batches} : mine;
  }
  void begin_sum(ExactSum& s, std::span<float> g) override {
    sum = &s;
    grads = g;
  }
  void reduce() override {
    sum->reduce_locally(grads);
    seen.emplace_back(grads.begin(), grads.end());
  }
  void gather(std::span<const double> rows, std::span<double> all, int64_t width, int64_t items) override {
    // This process's rows where they belong; the first other row carries the other processes' sums.
    std::fill(all.begin(), all.end(), 0.0);
    const MicroBatchRange m = share(items);
    std::copy(rows.begin(), rows.end(), all.begin() + m.first * width);
    const int64_t other = m.first == 0 ? m.count : 0;
    if (other < items) {
      all[static_cast<size_t>(other * width)] += other_loss;
      all[static_cast<size_t>(other * width + 1)] += other_correct;
      all[static_cast<size_t>(other * width + 2)] += 1;  // a sample, so the batch-norm weights stay finite
    }
  }
  bool any(bool b) override { return b; }
  bool writes_output() const override { return true; }
};

const RunContext kTrain{Mode::train, 5, 2, 320};  // epoch 2; the step's first sample is sample 320 of the epoch

}  // namespace

TEST_CASE("a step of one micro-batch is forward, loss, backward and update, bit for bit") {
  Tensor x;
  std::vector<int32_t> labels;
  batch(16, x, labels);
  Network by_hand = make_mlp(3);
  auto opt_by_hand = plain_sgd(by_hand);
  by_hand.zero_grad();
  Tensor dlogits;
  const double loss = softmax_cross_entropy(by_hand.forward(x, kTrain), labels, &dlogits);
  by_hand.backward(dlogits, kTrain);
  opt_by_hand->step(by_hand.params(), by_hand.grads(), 0.1);

  for (int64_t micro : {0, 16, 64}) {
    CAPTURE(micro);
    Network net = make_mlp(3);
    auto opt = plain_sgd(net);
    LocalGradientReducer local;
    TrainingStep step(net, *opt, local, 16, micro);
    const StepStats stats = step.run(x, labels, 16, kTrain, 0.1);
    CHECK(stats.loss == loss);
    CHECK(stats.count == 16);
    CHECK(stats.finite);
    CHECK(std::memcmp(net.params().data(), by_hand.params().data(), net.params().size_bytes()) == 0);
  }
}

TEST_CASE("micro-batches add up to the whole batch's gradient, with the same dropout masks") {
  Tensor x;
  std::vector<int32_t> labels;
  batch(16, x, labels);
  std::vector<float> whole, split;
  double whole_loss = 0, split_loss = 0;
  for (int64_t micro : {0, 4}) {
    Network net = make_mlp(7);
    auto opt = plain_sgd(net);
    RecordingReducer rec;
    TrainingStep step(net, *opt, rec, 16, micro);
    const StepStats stats = step.run(x, labels, 16, kTrain, 0.1);
    if (micro == 0) {  // one micro-batch on one process: the plain path, nothing to reduce
      CHECK(rec.seen.empty());
      rec.seen.emplace_back(net.grads().begin(), net.grads().end());
    }
    REQUIRE(rec.seen.size() == 1);  // reduce() once per step, after every micro-batch
    (micro ? split : whole) = rec.seen[0];
    (micro ? split_loss : whole_loss) = stats.loss;
  }
  CHECK(split_loss == doctest::Approx(whole_loss).epsilon(1e-6));  // logits of a smaller GEMM may round differently
  double diff = 0, norm = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(whole[i] - split[i])));
    norm = std::max(norm, static_cast<double>(std::fabs(whole[i])));
  }
  CHECK(norm > 1e-3);
  CHECK(diff <= 1e-6 * norm);  // only the order of the float sums differs
}

TEST_CASE("the reducer decides which micro-batches a process computes, and its sums are what the step reports") {
  // Micro-batches 1 and 2 of 4 (samples 4..11 of a 16-sample step), as rank 1 of 3 might get them.
  RecordingReducer rec;
  rec.whole = false;
  rec.mine = {1, 2};
  rec.other_loss = 1.5;
  rec.other_correct = 3;
  Network net = make_mlp(9);
  auto opt = plain_sgd(net);
  TrainingStep step(net, *opt, rec, 16, 4);
  const SampleRange mine = step.local_samples(16);
  CHECK(mine.first == 4);
  CHECK(mine.count == 8);
  Tensor x, x1, x2;
  std::vector<int32_t> labels, l1, l2;
  batch(8, x, labels, 4);
  const StepStats stats = step.run(x, labels, 16, kTrain, 0.1);

  // The same two micro-batches by hand: each one's loss over the step's 16 samples, their gradients summed
  // exactly as a step of 4 micro-batches sums them.
  Network ref = make_mlp(9);
  batch(4, x1, l1, 4);
  batch(4, x2, l2, 8);
  Tensor d;
  RunContext ctx = kTrain;
  ctx.first_sample = kTrain.first_sample + 4;
  ref.zero_grad();
  const double loss1 = softmax_cross_entropy(ref.forward(x1, ctx), l1, &d, 16);
  ref.backward(d, ctx);
  const std::vector<float> g1(ref.grads().begin(), ref.grads().end());
  ctx.first_sample = kTrain.first_sample + 8;
  ref.zero_grad();
  const double loss2 = softmax_cross_entropy(ref.forward(x2, ctx), l2, &d, 16);
  ref.backward(d, ctx);
  ExactSum exact(learnable_segments(ref), ref.learnable_count(), 1 << 20);
  exact.begin_step(4, 2);
  exact.keep(g1);
  exact.set_live(ref.grads());
  exact.reduce_locally(ref.grads());
  REQUIRE(rec.seen.size() == 1);
  CHECK(std::memcmp(rec.seen[0].data(), ref.grads().data(), ref.grads().size_bytes()) == 0);
  CHECK(stats.loss == 0.0 + 1.5 + loss1 + loss2);  // rows added in micro-batch order: the other process's first
  CHECK(stats.count == 16);

  // A non-finite loss anywhere stops the step before the update, on every process alike.
  rec.other_loss = NAN;
  const std::vector<float> before(net.params().begin(), net.params().end());
  CHECK_FALSE(step.run(x, labels, 16, kTrain, 0.1).finite);
  CHECK(std::equal(before.begin(), before.end(), net.params().begin()));
}

TEST_CASE("the run-config table: --micro-batch must match on resume, and a checkpoint without it means the batch") {
  TrainConfig c;
  c.data = "d";
  c.micro_batch = 64;  // runs store the resolved size: here the whole batch
  ScheduleOptions s;
  const std::string whole = run_config_json(c, s, "none", 100);
  c.micro_batch = 16;
  const std::string micro = run_config_json(c, s, "none", 100);
  CHECK(run_config_differences(whole, micro) ==
        std::vector<std::string>{"--micro-batch: given 16, the checkpoint has 64"});
  nlohmann::json old = nlohmann::json::parse(whole);
  old.erase("micro_batch");  // written before the setting existed: one micro-batch per step
  CHECK(run_config_differences(old.dump(), whole).empty());
  CHECK(run_config_differences(old.dump(), micro).size() == 1);
  old["micro_batch"] = 0;  // written before it was resolved: 0 stood for the whole batch
  CHECK(run_config_differences(old.dump(), whole).empty());
  // Informational settings may differ; compared ones are named with their flag.
  c.micro_batch = 64;
  c.epochs = 9;
  c.data = "elsewhere";
  c.seed = 4;
  c.hosts = {"a", "b"};
  CHECK(run_config_differences(whole, run_config_json(c, s, "none", 100)) ==
        std::vector<std::string>{"--seed: given 4, the checkpoint has 1"});
  const auto stored = nlohmann::json::parse(run_config_json(c, s, "none", 100));
  CHECK(stored["processes"] == 2);
  CHECK(stored["hosts"] == nlohmann::json::array({"a", "b"}));
}

TEST_CASE("resolve_micro_batch: 16 by default when it divides the batch, else the whole batch; clear errors") {
  CHECK(resolve_micro_batch(64, 0, 1) == 16);
  CHECK(resolve_micro_batch(128, 0, 4) == 16);
  CHECK(resolve_micro_batch(100, 0, 1) == 100);
  CHECK(resolve_micro_batch(96, 32, 3) == 32);
  CHECK(resolve_micro_batch(16, 16, 1) == 16);
  using test::contains;
  using test::thrown_message;
  CHECK(contains(thrown_message<ConfigError>([] { resolve_micro_batch(100, 16, 1); }),
                 "--batch 100 does not split into micro-batches of 16"));
  CHECK(contains(thrown_message<ConfigError>([] { resolve_micro_batch(100, 0, 2); }), "fewer than the 2 processes"));
  CHECK(contains(thrown_message<ConfigError>([] { resolve_micro_batch(64, 16, 8); }),
                 "4 micro-batches of 16, fewer than the 8 processes"));
}

TEST_CASE("stride train --micro-batch 16 trains like one micro-batch of 64 on a model without batch norm") {
  // Fashion-MNIST from Debian's dataset-fashion-mnist, which the CI install step always provides.
  const std::filesystem::path fashion = "/usr/share/datasets/fashion-mnist";
  REQUIRE_MESSAGE(std::filesystem::is_directory(fashion),
                  fashion.string() << " is missing (apt-get install dataset-fashion-mnist)");
  test::TempDir dir("micro");
  std::vector<double> losses;
  for (const char* micro : {"64", "16"}) {
    const auto r = test::run_stride("train --model lenet5 --data " + fashion.string() +
                                    " --epochs 1 --limit-train 640 --limit-test 100 --batch 64 --log-every 5 "
                                    "--no-progress --threads 2 --micro-batch " + std::string(micro) + " --out " +
                                    (dir / micro));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::ifstream metrics(dir.path / micro / "metrics.jsonl");
    std::string line;
    std::getline(metrics, line);  // the step line after 5 steps
    losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  }
  CHECK(losses[1] == doctest::Approx(losses[0]).epsilon(1e-4));
  const auto r = test::run_stride("train --model lenet5 --data " + fashion.string() +
                                  " --epochs 2 --limit-train 640 --limit-test 100 --batch 64 --no-progress "
                                  "--micro-batch 32 --resume " + (dir / "64"));
  CHECK(r.exit_code != 0);
  CHECK(test::contains(r.output, "--micro-batch: given 32, the checkpoint has 64"));
}

TEST_CASE("ghost batch norm: each micro-batch normalized alone, running statistics updated once per step") {
  const char* spec = R"({"name": "bn", "layers": [
    {"name": "flatten", "type": "flatten"},
    {"name": "fc", "type": "linear", "out_features": 3},
    {"name": "bn", "type": "batchnorm1d"},
    {"name": "out", "type": "linear", "out_features": 10}]})";
  Tensor x;
  std::vector<int32_t> labels;
  batch(16, x, labels);
  Network net = build_network(spec, Shape{1, 6, 6});
  net.init(2);
  // The batch statistics of each micro-batch of 4, by hand, from the same network before the step.
  Network probe = build_network(spec, Shape{1, 6, 6});
  probe.init(2);
  auto* bn = dynamic_cast<BatchNorm*>(probe.find_layer("bn"));
  REQUIRE(bn != nullptr);
  bn->defer_running_statistics(true);
  std::vector<double> mean(3, 0.0), var(3, 0.0);
  Tensor part;
  for (int64_t k = 0; k < 4; ++k) {
    batch(4, part, labels, 4 * k);
    probe.forward(part, kTrain);
    for (int c = 0; c < 3; ++c) {
      mean[static_cast<size_t>(c)] += 4 * bn->batch_statistics()[static_cast<size_t>(c)];
      var[static_cast<size_t>(c)] += 4 * bn->batch_statistics()[static_cast<size_t>(3 + c)];
    }
  }
  batch(16, x, labels);
  auto opt = plain_sgd(net);
  LocalGradientReducer local;
  TrainingStep step(net, *opt, local, 16, 4);
  step.run(x, labels, 16, kTrain, 0.1);
  const auto rm = net.values_of("bn/running_mean"), rv = net.values_of("bn/running_var");
  for (size_t c = 0; c < 3; ++c) {  // from 0 and 1: one update with momentum 0.1
    CHECK(rm[c] == static_cast<float>(0.9 * 0.0 + 0.1 * (mean[c] / 16)));
    CHECK(rv[c] == static_cast<float>(0.9 * 1.0 + 0.1 * (var[c] / 16)));
  }
}
