// Weights-only files (docs/checkpoint.md, "Weights in and out"): read_weights() on checkpoints and on files that
// hold only /params (plus optional /normalization, class_names, model_spec), and `stride train --init`,
// `stride eval` and `stride predict` on such files. The PyTorch direction (scripts/torch_to_stride.py) is
// tested in test_torch_weights.cpp.
#include <doctest/doctest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "framework/core/errors.hpp"
#include "io/checkpoint.hpp"
#include "tests/expect_error.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
using stride::test::run_stride;
namespace fs = std::filesystem;

namespace {

// Fashion-MNIST from Debian's dataset-fashion-mnist, which the CI install step always provides.
const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

struct WeightsOnlyOptions {
  const char* format = kWeightsFormat;  // nullptr: no format attribute (a hand-made h5py file)
  int64_t version = kWeightsVersion;
  bool keep_spec = false, keep_normalization = false;
  const char* drop_param = nullptr;  // e.g. "ip2/bias"
};

// Copies a stride checkpoint and strips it down to a weights-only file, with HDF5 directly, as a user with
// h5py (or scripts/torch_to_stride.py) would write one.
std::string weights_only_copy(const std::string& checkpoint, const std::string& out, const WeightsOnlyOptions& o) {
  fs::copy_file(checkpoint, out, fs::copy_options::overwrite_existing);
  const hid_t f = H5Fopen(out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  for (const char* attr : {"format", "version", "stride_version", "epoch", "step", "samples_seen", "seed", "wall_time",
                           "run_config"})
    REQUIRE(H5Adelete(f, attr) >= 0);
  if (!o.keep_spec) REQUIRE(H5Adelete(f, "model_spec") >= 0);
  for (const char* group : {"/optimizer", "/progress"})
    if (H5Lexists(f, group, H5P_DEFAULT) > 0) REQUIRE(H5Ldelete(f, group, H5P_DEFAULT) >= 0);
  if (!o.keep_normalization) REQUIRE(H5Ldelete(f, "/normalization", H5P_DEFAULT) >= 0);
  if (o.drop_param) REQUIRE(H5Ldelete(f, (std::string("/params/") + o.drop_param).c_str(), H5P_DEFAULT) >= 0);
  if (o.format) {
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(f, "format", type, space, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(a, type, &o.format) >= 0);
    H5Aclose(a);
    const hid_t v = H5Acreate2(f, "version", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(v, H5T_NATIVE_INT64, &o.version) >= 0);
    H5Aclose(v);
    H5Sclose(space);
    H5Tclose(type);
  }
  H5Fclose(f);
  return out;
}

void require_fashion() {
  REQUIRE_MESSAGE(fs::is_directory(kFashion),
                  kFashion.string() << " is missing (apt-get install dataset-fashion-mnist)");
}

// A short lenet5 run on 256 Fashion-MNIST images: its final.h5, in `dir`.
std::string trained_lenet5(const test::TempDir& dir) {
  const auto r = run_stride("train --model lenet5 --data " + kFashion.string() +
                            " --epochs 1 --limit-train 256 --limit-test 100 --batch 64 --threads 2 --no-progress"
                            " --out " +
                            (dir / "run"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return dir / "run/final.h5";
}

}  // namespace

TEST_CASE("read_weights: a checkpoint whole, a weights-only file's params, normalization and names") {
  require_fashion();
  test::TempDir dir("weights");
  const std::string final_h5 = trained_lenet5(dir);
  const Checkpoint full = read_checkpoint(final_h5);

  const Checkpoint same = read_weights(final_h5);  // a checkpoint is read whole
  CHECK(same.version == kCheckpointVersion);
  CHECK(same.step == full.step);
  CHECK(same.optimizer.size() == full.optimizer.size());
  CHECK(same.run_config == full.run_config);

  for (const char* format : {kWeightsFormat, static_cast<const char*>(nullptr)}) {
    CAPTURE(format ? format : "(no format attribute)");
    WeightsOnlyOptions o;
    o.format = format;
    o.keep_normalization = true;
    const Checkpoint w = read_weights(weights_only_copy(final_h5, dir / "w.h5", o));
    CHECK(w.version == 0);
    CHECK(w.model_spec.empty());
    CHECK(w.run_config.empty());
    CHECK(w.optimizer.empty());
    CHECK_FALSE(w.has_progress);
    CHECK(w.norm_mean == full.norm_mean);
    CHECK(w.norm_std == full.norm_std);
    CHECK(w.class_names == full.class_names);
    REQUIRE(w.params.size() == 8);
    for (const auto& [key, array] : full.params) {
      const std::string& name = key;  // CAPTURE's lambda cannot capture a structured binding in clang 14
      CAPTURE(name);
      REQUIRE(w.params.count(name) == 1);
      CHECK(w.params.at(name).shape == array.shape);
      CHECK(w.params.at(name).values == array.values);
    }
  }
  const Checkpoint bare = read_weights(weights_only_copy(final_h5, dir / "bare.h5", {}));
  CHECK(bare.norm_mean.empty());
  CHECK(bare.norm_std.empty());
}

TEST_CASE("read_weights: a foreign format, a newer version and an empty /params are errors naming the file") {
  require_fashion();
  test::TempDir dir("weights-bad");
  const std::string final_h5 = trained_lenet5(dir);
  WeightsOnlyOptions o;
  o.format = "keras-weights";
  std::string msg = test::io_error([&] { read_weights(weights_only_copy(final_h5, dir / "keras.h5", o)); });
  CHECK(test::contains(msg, "keras.h5: attribute 'format': expected \"stride-weights\" or \"stride-checkpoint\", "
                            "got \"keras-weights\""));
  o = {};
  o.version = 2;
  msg = test::io_error([&] { read_weights(weights_only_copy(final_h5, dir / "v2.h5", o)); });
  CHECK(test::contains(msg, "v2.h5: attribute 'version': expected 1 for a \"stride-weights\" file, got 2"));

  const std::string empty = weights_only_copy(final_h5, dir / "empty.h5", {});
  const hid_t f = H5Fopen(empty.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(H5Ldelete(f, "/params", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  CHECK(test::contains(test::io_error([&] { read_weights(empty); }), "empty.h5: no datasets under /params"));
  CHECK(test::contains(test::io_error([&] { read_weights(dir / "nope.h5"); }), "nope.h5: no such weights file"));
}

TEST_CASE("stride eval, predict and train --init take a weights-only file; what it lacks is named") {
  require_fashion();
  test::TempDir dir("weights-cli");
  const std::string final_h5 = trained_lenet5(dir);
  const std::string data = " --data " + kFashion.string() + " --limit 100";

  // The reference: eval on the run's own final.h5.
  const auto ref = run_stride("eval --weights " + final_h5 + data);
  INFO(ref.output);
  REQUIRE(ref.exit_code == 0);
  const std::string ref_accuracy = ref.output.substr(0, ref.output.find('\n'));
  CHECK(test::contains(ref_accuracy, "accuracy 0."));

  // No spec in the file: --model is required, and then the same weights and normalization give the same line.
  WeightsOnlyOptions o;
  o.keep_normalization = true;
  const std::string with_norm = weights_only_copy(final_h5, dir / "with-norm.h5", o);
  auto r = run_stride("eval --weights " + with_norm + data);
  CHECK(r.exit_code != 0);
  CHECK(test::contains(r.output, "with-norm.h5: the file stores no model spec (a weights-only file); give --model"));
  r = run_stride("eval --model lenet5 --weights " + with_norm + data);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.substr(0, r.output.find('\n')) == ref_accuracy);

  // A stored spec is enough; no /normalization means pixel/255 (ToTensor), and a note says so.
  o = {};
  o.keep_spec = true;
  const std::string spec_only = weights_only_copy(final_h5, dir / "spec-only.h5", o);
  r = run_stride("eval --weights " + spec_only + data);
  CHECK(r.exit_code == 0);
  CHECK(test::contains(r.output, "note: " + spec_only + " has no /normalization: the input is pixel/255"));
  std::ofstream(dir / "digit.pgm", std::ios::binary) << "P5\n28 28\n255\n" << std::string(28 * 28, '\x40');
  r = run_stride("predict --weights " + spec_only + " --top 3 " + (dir / "digit.pgm"));
  CHECK(r.exit_code == 0);
  CHECK(test::contains(r.output, "digit.pgm:"));

  // --init starts a new run from it; a parameter the file lacks is named.
  r = run_stride("train --model lenet5 --init " + with_norm + " --data " + kFashion.string() +
                 " --epochs 1 --limit-train 64 --limit-test 50 --no-progress --out " + (dir / "from-init"));
  CHECK(r.exit_code == 0);
  o.drop_param = "ip2/bias";
  const std::string lacking = weights_only_copy(final_h5, dir / "lacking.h5", o);
  r = run_stride("train --model lenet5 --init " + lacking + " --data " + kFashion.string() +
                 " --epochs 1 --limit-train 64 --no-progress --out " + (dir / "lacking-run"));
  CHECK(r.exit_code != 0);
  CHECK(test::contains(r.output, "lacking.h5: has no /params/ip2/bias, which the model needs"));
  r = run_stride("eval --model cifar10_quick --weights " + with_norm + data);
  CHECK(r.exit_code != 0);
}
