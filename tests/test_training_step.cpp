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

// Records what the step hands it; `other` plays the statistics of another process.
struct RecordingReducer final : GradientReducer {
  MicroBatchRange mine{0, 0};
  bool whole = true;  // share everything
  std::vector<std::vector<float>> seen;
  double other_loss = 0, other_correct = 0;
  MicroBatchRange share(int64_t micro_batches) const override {
    return whole ? MicroBatchRange{0, micro_batches} : mine;
  }
  void reduce(std::span<float> grads) override { seen.emplace_back(grads.begin(), grads.end()); }
  void reduce_statistics(std::span<double> values) override {
    values[0] += other_loss;
    values[1] += other_correct;
  }
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
    TrainingStep step(net, *opt, local, micro);
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
    TrainingStep step(net, *opt, rec, micro);
    const StepStats stats = step.run(x, labels, 16, kTrain, 0.1);
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
  TrainingStep step(net, *opt, rec, 4);
  const SampleRange mine = step.local_samples(16);
  CHECK(mine.first == 4);
  CHECK(mine.count == 8);
  Tensor x, x1, x2;
  std::vector<int32_t> labels, l1, l2;
  batch(8, x, labels, 4);
  const StepStats stats = step.run(x, labels, 16, kTrain, 0.1);

  // The same two micro-batches by hand: each one's loss over the step's 16 samples, gradients added.
  Network ref = make_mlp(9);
  ref.zero_grad();
  batch(4, x1, l1, 4);
  batch(4, x2, l2, 8);
  Tensor d;
  RunContext ctx = kTrain;
  ctx.first_sample = kTrain.first_sample + 4;
  double loss = softmax_cross_entropy(ref.forward(x1, ctx), l1, &d, 16);
  ref.backward(d, ctx);
  ctx.first_sample = kTrain.first_sample + 8;
  loss += softmax_cross_entropy(ref.forward(x2, ctx), l2, &d, 16);
  ref.backward(d, ctx);
  REQUIRE(rec.seen.size() == 1);
  CHECK(std::memcmp(rec.seen[0].data(), ref.grads().data(), ref.grads().size_bytes()) == 0);
  CHECK(stats.loss == loss + 1.5);
  CHECK(stats.count == 16);

  // A non-finite loss anywhere stops the step before the update, on every process alike.
  rec.other_loss = NAN;
  const std::vector<float> before(net.params().begin(), net.params().end());
  CHECK_FALSE(step.run(x, labels, 16, kTrain, 0.1).finite);
  CHECK(std::equal(before.begin(), before.end(), net.params().begin()));
}

TEST_CASE("the run-config table: --micro-batch must match on resume, and a checkpoint without it means 0") {
  TrainConfig c;
  c.data = "d";
  ScheduleOptions s;
  const std::string whole = run_config_json(c, s, "none", 100);
  c.micro_batch = 16;
  const std::string micro = run_config_json(c, s, "none", 100);
  CHECK(run_config_differences(whole, micro) ==
        std::vector<std::string>{"--micro-batch: this run has 16, the checkpoint 0"});
  nlohmann::json old = nlohmann::json::parse(whole);
  old.erase("micro_batch");  // written before the setting existed
  CHECK(run_config_differences(old.dump(), whole).empty());
  CHECK(run_config_differences(old.dump(), micro).size() == 1);
  // Informational settings may differ; compared ones are named with their flag.
  c.micro_batch = 0;
  c.epochs = 9;
  c.data = "elsewhere";
  c.seed = 4;
  CHECK(run_config_differences(whole, run_config_json(c, s, "none", 100)) ==
        std::vector<std::string>{"--seed: this run has 4, the checkpoint 1"});
}

TEST_CASE("stride train --micro-batch 16 trains like one micro-batch of 64 on a model without batch norm") {
  // Fashion-MNIST from Debian's dataset-fashion-mnist, which the CI install step always provides.
  const std::filesystem::path fashion = "/usr/share/datasets/fashion-mnist";
  REQUIRE_MESSAGE(std::filesystem::is_directory(fashion),
                  fashion.string() << " is missing (apt-get install dataset-fashion-mnist)");
  test::TempDir dir("micro");
  std::vector<double> losses;
  for (const char* micro : {"0", "16"}) {
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
                                  "--micro-batch 32 --resume " + (dir / "0"));
  CHECK(r.exit_code != 0);
  CHECK(test::contains(r.output, "--micro-batch: this run has 32, the checkpoint 0"));
}
