// Accuracy of real training runs of the `stride` binary (issue 4, "Accuracy"), CI-sized.
// The PyTorch 1.13 reference numbers come from bench/torch_reference.py (same models, data, normalization,
// SGD momentum 0.9, lr 0.01, weight decay 5e-4, batch 64, per-iteration cosine schedule); the full runs and
// their commands are in docs/results.md. These cases take about a minute each on 2 shared cores; run only
// them with -tc='accuracy*', or leave them out with -tce='accuracy*'.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/data_rule.hpp"
#include "tests/run_command.hpp"

using stride::test::run_stride;

namespace {

namespace fs = std::filesystem;

// The number after "test accuracy " in stride train's output, or -1 when that line is missing or the value is
// not an accuracy (stod also accepts "nan" and "inf").
double parse_test_accuracy(const std::string& output) {
  const std::string key = "test accuracy ";
  const size_t at = output.rfind(key);
  if (at == std::string::npos) return -1.0;
  try {
    const double v = std::stod(output.substr(at + key.size()));
    return std::isfinite(v) && v >= 0.0 && v <= 1.0 ? v : -1.0;
  } catch (const std::exception&) {
    return -1.0;
  }
}

// A run directory of this test process that is removed afterwards.
struct TempRunDir {
  fs::path path;
  explicit TempRunDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("stride-accuracy-" + tag + "-" + std::to_string(::getpid()))) {}
  ~TempRunDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Trains with the recipe (the defaults of `stride train` are that recipe; spelled out so a change of
// defaults cannot silently change what is measured) and returns the output and final test accuracy.
double train_and_check(const std::string& data, const std::string& tag, const std::string& extra) {
  TempRunDir out(tag);
  const auto r = run_stride("train --model lenet5 --data " + data +
                            " --batch 64 --lr 0.01 --momentum 0.9 --weight-decay 0.0005 --optimizer sgd"
                            " --schedule cosine --augment none --seed 1 --threads 2 --no-progress --out " +
                            out.path.string() + " " + extra);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const double acc = parse_test_accuracy(r.output);
  REQUIRE(acc >= 0.0);
  // The printed accuracy is the last epoch's test_acc in metrics.jsonl.
  std::ifstream metrics(out.path / "metrics.jsonl");
  std::string line, last;
  while (std::getline(metrics, line))
    if (!line.empty()) last = line;
  const nlohmann::json epoch = nlohmann::json::parse(last);
  CHECK(epoch["kind"] == "epoch");
  // Printed with four decimals.
  CHECK(std::abs(epoch["test_acc"].get<double>() - acc) <= 0.00005);
  return acc;
}

}  // namespace

TEST_CASE("parse_test_accuracy reads stride train's final line and reports a missing one") {
  CHECK(parse_test_accuracy("epoch 1/1: ...\ntest accuracy 0.9125\nmodel: x\n") == doctest::Approx(0.9125));
  CHECK(parse_test_accuracy("error: --data: required\n") == -1.0);
  CHECK(parse_test_accuracy("test accuracy nan") == -1.0);
  CHECK(parse_test_accuracy("test accuracy 1.5") == -1.0);
  CHECK(parse_test_accuracy("test accuracy ?") == -1.0);
  // The last such line counts (an epoch line never says "test accuracy", but a rerun's output might repeat).
  CHECK(parse_test_accuracy("test accuracy 0.5\ntest accuracy 0.75\n") == doctest::Approx(0.75));
}

// PyTorch 1.13, bench/torch_reference.py --model lenet5 --data /usr/share/datasets/fashion-mnist --epochs 2
// --threads 2 --seed 1: 0.8829 (5 epochs: 0.9058; issue 4 quotes 0.909). stride, seed 1: 0.8793 with its own
// kernels and micro-batches of 16 (0.8787 with OpenBLAS and whole batches; docs/results.md).
TEST_CASE("accuracy: Fashion-MNIST lenet5, 2 epochs, reaches >= 0.87 (PyTorch 1.13: 0.8829)") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!stride::test::have_data(dir)) return;
  const double acc = train_and_check(dir, "fashion", "--epochs 2 --classes fashion-mnist");
  MESSAGE("Fashion-MNIST lenet5 2 epochs: test accuracy " << acc);
  CHECK(acc >= 0.87);
  CHECK(acc < 1.0);
}

// PyTorch 1.13, bench/torch_reference.py --model lenet5 --data ../shared/data/mnist-digits-sample --epochs 5
// --threads 2 --seed 1: 0.9645 (issue 4 quotes 0.9725 from another run). stride, seed 1: 0.9655 (0.9650 before
// issue 9).
TEST_CASE("accuracy: MNIST digits sample lenet5, 5 epochs, reaches >= 0.96 (PyTorch 1.13: 0.9645)") {
  const fs::path dir = fs::path(STRIDE_SHARED_DATA) / "mnist-digits-sample";
  if (!stride::test::have_data(dir)) return;
  const double acc = train_and_check(dir.string(), "mnist", "--epochs 5");
  MESSAGE("MNIST sample lenet5 5 epochs: test accuracy " << acc);
  CHECK(acc >= 0.96);
  CHECK(acc < 1.0);
}
