// End-to-end tests of `stride train`, `eval`, `predict` and `convert` through the real binary.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/checkpoint.hpp"
#include "io/image.hpp"
#include "tests/data_rule.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using stride::test::run_stride;
using stride::test::write_bytes;
namespace fs = std::filesystem;

namespace {

const std::string kMnist = std::string(STRIDE_SHARED_DATA) + "/mnist-digits-sample";
const std::string kCifar = std::string(STRIDE_SHARED_DATA) + "/cifar10-sample";

fs::path scratch_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("stride-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::vector<nlohmann::json> read_metrics(const fs::path& run) {
  std::ifstream in(run / "metrics.jsonl");
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

double parse_accuracy(const std::string& output) {
  const auto pos = output.rfind("test accuracy ");
  REQUIRE(pos != std::string::npos);
  return std::stod(output.substr(pos + 14));
}

bool have(const std::string& dir) { return stride::test::have_data(dir); }

// A CIFAR-10 directory of `records` records per file, label = record % 10, pixels from a simple pattern.
void write_cifar_dir(const fs::path& dir, int records) {
  fs::create_directories(dir);
  std::vector<uint8_t> bytes;
  for (int r = 0; r < records; ++r) {
    bytes.push_back(static_cast<uint8_t>(r % 10));
    for (int i = 0; i < 3072; ++i) bytes.push_back(static_cast<uint8_t>((i * 7 + r * 13) % 256));
  }
  for (int b = 1; b <= 5; ++b) write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), bytes);
  write_bytes(dir / "test_batch.bin", bytes);
}

}  // namespace

TEST_CASE("a small net trained on a slice of real MNIST digits: the loss falls and accuracy beats chance widely") {
  if (!have(kMnist)) return;
  const fs::path run = scratch_dir("e2e");
  auto r = run_stride("train --model lenet5 --data " + kMnist + " --epochs 2 --limit-train 2000 --limit-test 500 "
                      "--batch 32 --lr 0.01 --log-every 10 --out " + run.string());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto metrics = read_metrics(run);
  REQUIRE(metrics.size() > 4);
  CHECK(metrics.front()["kind"] == "step");
  CHECK(metrics.back()["kind"] == "epoch");
  CHECK(metrics.back()["epoch"] == 2);
  // The first logged window starts near ln(10) = 2.30; two epochs later the loss is a fraction of it.
  CHECK(metrics.front()["loss"].get<double>() > 1.0);
  CHECK(metrics.back()["loss"].get<double>() < 0.5 * metrics.front()["loss"].get<double>());
  const double acc = parse_accuracy(r.output);
  CHECK(acc > 0.85);  // chance is 0.1
  CHECK(std::abs(metrics.back()["test_acc"].get<double>() - acc) <= 0.00005);  // printed with four decimals
  CHECK(r.output.find("model: " + (run / "final.h5").string()) != std::string::npos);
  CHECK(r.output.find("metrics: " + (run / "metrics.jsonl").string()) != std::string::npos);

  // eval reproduces the final test accuracy and prints the confusion matrix as JSON.
  auto e = run_stride("eval --weights " + (run / "final.h5").string() + " --data " + kMnist + " --limit 500 --json");
  REQUIRE(e.exit_code == 0);
  auto j = nlohmann::json::parse(e.output);
  CHECK(j["accuracy"].get<double>() == doctest::Approx(acc).epsilon(1e-9));
  CHECK(j["confusion"].size() == 10);
  int64_t total = 0;
  for (const auto& row : j["confusion"])
    for (const auto& v : row) total += v.get<int64_t>();
  CHECK(total == 500);
  CHECK(j["per_class"].size() == 10);

  // predict: a blank 28x28 image gets five classes whose probabilities are sorted and below 1.
  stride::Image blank(1, 28, 28, 0);
  stride::write_pnm(blank, (run / "blank.pgm").string());
  auto p = run_stride("predict --weights " + (run / "final.h5").string() + " " + (run / "blank.pgm").string());
  CHECK(p.exit_code == 0);
  CHECK(std::count(p.output.begin(), p.output.end(), '\n') == 6);
  // A 40x30 RGB PNG is converted to gray and resized to 28x28; --no-resize refuses it instead.
  stride::Image rgb(3, 30, 40, 0);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = static_cast<uint8_t>(i * 31 % 256);
  stride::write_png(rgb, (run / "rgb.png").string());
  auto q = run_stride("predict --weights " + (run / "final.h5").string() + " --top 3 " + (run / "rgb.png").string());
  CHECK(q.exit_code == 0);
  CHECK(std::count(q.output.begin(), q.output.end(), '\n') == 4);
  auto strict = run_stride("predict --no-resize --weights " + (run / "final.h5").string() + " " + (run / "rgb.png").string());
  CHECK(strict.exit_code != 0);
  CHECK(strict.output.find("image is 40x30, the model takes 28x28") != std::string::npos);
  auto missing = run_stride("predict --weights " + (run / "final.h5").string() + " " + (run / "nothing.png").string());
  CHECK(missing.exit_code != 0);
  CHECK(missing.output.find("nothing.png") != std::string::npos);
  fs::remove_all(run);
}

TEST_CASE("the same seed gives bit-identical losses and weights at 1 and 2 threads") {
  if (!have(kMnist)) return;
  const fs::path base = scratch_dir("determinism");
  const std::string args = "train --model mlp --data " + kMnist +
                           " --epochs 2 --limit-train 1200 --limit-test 300 --batch 50 --lr 0.05 --log-every 5 "
                           "--weight-decay 5e-4 --optimizer sgd --nesterov";
  std::vector<std::vector<nlohmann::json>> metrics;
  std::vector<stride::Checkpoint> finals;
  for (const char* run : {"a1", "b1", "c2"}) {
    const int threads = run[1] - '0';
    auto r = run_stride(args + " --seed 7 --threads " + std::to_string(threads) + " --out " + (base / run).string());
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    metrics.push_back(read_metrics(base / run));
    finals.push_back(stride::read_checkpoint((base / run / "final.h5").string()));
  }
  for (size_t k = 1; k < metrics.size(); ++k) {
    REQUIRE(metrics[k].size() == metrics[0].size());
    for (size_t i = 0; i < metrics[0].size(); ++i) {
      CHECK(metrics[k][i]["loss"].get<double>() == metrics[0][i]["loss"].get<double>());
      CHECK(metrics[k][i]["train_acc"].get<double>() == metrics[0][i]["train_acc"].get<double>());
    }
    REQUIRE(finals[k].params.size() == finals[0].params.size());
    // Plain loops over pairs: clang 14 cannot capture structured bindings in the CHECK macros' lambdas.
    for (const auto& item : finals[0].params)
      CHECK_MESSAGE(finals[k].params.at(item.first).values == item.second.values, item.first);
    for (const auto& item : finals[0].optimizer)
      CHECK_MESSAGE(finals[k].optimizer.at(item.first).values == item.second.values, item.first);
  }
  // A different seed gives a different run.
  auto other = run_stride(args + " --seed 8 --out " + (base / "d").string());
  REQUIRE(other.exit_code == 0);
  CHECK(read_metrics(base / "d")[0]["loss"].get<double>() != metrics[0][0]["loss"].get<double>());
  fs::remove_all(base);
}

TEST_CASE("bad training inputs exit non-zero with a one-line error naming the problem") {
  const fs::path dir = scratch_dir("badinput");
  auto fails_with = [&](const std::string& args, const std::string& expected) {
    auto r = run_stride(args);
    INFO(args);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("error: ") == 0);
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    CHECK(r.output.find(expected) != std::string::npos);
  };
  const std::string out = " --out " + (dir / "run").string();
  write_cifar_dir(dir / "cifar_ok", 4);
  const std::string data = " --data " + (dir / "cifar_ok").string();
  fails_with("train --model cifar10_quick --data " + (dir / "nowhere").string() + out, (dir / "nowhere").string());
  fails_with("train --model lenet7" + data + out, "model 'lenet7'");
  fails_with("train --model cifar10_quick" + data + " --batch 0" + out, "--batch");
  fails_with("train --model cifar10_quick" + data + " --epochs 0" + out, "--epochs");
  fails_with("train --model cifar10_quick" + data + " --lr -1" + out, "--lr");
  fails_with("train --model cifar10_quick" + data + " --optimizer rmsprop" + out, "rmsprop");
  fails_with("train --model cifar10_quick" + data + " --batch abc" + out, "batch");
  fails_with("train --model cifar10_quick" + data + " --frobnicate 1" + out, "frobnicate");
  fails_with("train --model cifar10_quick" + data + " --precision fp16" + out, "--precision: expected fp32 or bf16, got 'fp16'");
  // Wrong image size for the model: CIFAR's 3x32x32 into lenet5's 1x28x28.
  fails_with("train --model lenet5" + data + out, "takes input (C=1, H=28, W=28) but the data has (C=3, H=32, W=32)");

  // A truncated CIFAR file: the size is not a multiple of the 3073-byte record.
  write_cifar_dir(dir / "cifar_trunc", 4);
  fs::resize_file(dir / "cifar_trunc" / "data_batch_3.bin", 3073 * 4 - 100);
  fails_with("train --model cifar10_quick --data " + (dir / "cifar_trunc").string() + out, "data_batch_3.bin");
  // A mislabelled record: label byte 11 in a 10-class file.
  write_cifar_dir(dir / "cifar_label", 4);
  {
    std::fstream f(dir / "cifar_label" / "data_batch_2.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3073 * 2);
    f.put(static_cast<char>(11));
  }
  fails_with("train --model cifar10_quick --data " + (dir / "cifar_label").string() + out, "data_batch_2.bin");
  fs::remove_all(dir);
}

TEST_CASE("convert writes an HDF5 dataset that trains like the source directory") {
  if (!have(kCifar)) return;
  const fs::path dir = scratch_dir("convert");
  auto c = run_stride("convert --from cifar10 " + kCifar + " --out " + (dir / "cifar.h5").string());
  INFO(c.output);
  REQUIRE(c.exit_code == 0);
  const std::string common = " --model cifar10_quick --epochs 1 --limit-train 256 --limit-test 128 --batch 64 --seed 3";
  auto a = run_stride("train --data " + kCifar + common + " --out " + (dir / "a").string());
  auto b = run_stride("train --data " + (dir / "cifar.h5").string() + common + " --out " + (dir / "b").string());
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  const auto ma = read_metrics(dir / "a"), mb = read_metrics(dir / "b");
  REQUIRE(ma.size() == mb.size());
  for (size_t i = 0; i < ma.size(); ++i) CHECK(ma[i]["loss"].get<double>() == mb[i]["loss"].get<double>());
  auto wrong = run_stride("convert --from idx " + kCifar + " --out " + (dir / "x.h5").string());
  CHECK(wrong.exit_code != 0);
  CHECK(wrong.output.find("not a idx directory") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("a run config file sets the same hyperparameters as flags, and flags override it") {
  if (!have(kMnist)) return;
  const fs::path dir = scratch_dir("config");
  const std::string base = "train --model mlp --data " + kMnist + " --epochs 1 --limit-train 400 --limit-test 100 --log-every 2";
  {
    std::ofstream cfg(dir / "run.ini");
    cfg << "# hyperparameters for the test\nlr = 0.05\nbatch = 40\noptimizer = adam\nseed = 11\n";
  }
  auto flags = run_stride(base + " --lr 0.05 --batch 40 --optimizer adam --seed 11 --out " + (dir / "flags").string());
  auto config = run_stride(base + " --config " + (dir / "run.ini").string() + " --out " + (dir / "config").string());
  auto override = run_stride(base + " --config " + (dir / "run.ini").string() + " --lr 0.01 --out " + (dir / "override").string());
  REQUIRE(flags.exit_code == 0);
  REQUIRE(config.exit_code == 0);
  REQUIRE(override.exit_code == 0);
  const auto a = read_metrics(dir / "flags"), b = read_metrics(dir / "config"), c = read_metrics(dir / "override");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
  CHECK(c[0]["lr"].get<double>() == doctest::Approx(0.01).epsilon(0.2));  // cosine has barely moved at step 2
  CHECK(b[0]["lr"].get<double>() == doctest::Approx(0.05).epsilon(0.2));
  {
    std::ofstream cfg(dir / "bad.ini");
    cfg << "learning_rate = 0.1\n";
  }
  auto bad = run_stride(base + " --config " + (dir / "bad.ini").string() + " --out " + (dir / "bad").string());
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("bad.ini") != std::string::npos);
  CHECK(bad.output.find("learning_rate") != std::string::npos);
  fs::remove_all(dir);
}
