// Data-parallel training through the real binary under `mpirun --oversubscribe` (issue 10, docs/cluster.md):
// the final weights, optimizer state, losses and test results are bitwise those of one process, for any
// number of processes and threads, with SGD-momentum and Adam, batch norm and dropout; a run checkpointed with
// 2 processes resumes with 1 or 4 as if never interrupted. The failure cases are in test_mpi_failure.cpp.
// Data: the CIFAR-10 sample (../shared/data/cifar10-sample).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/checkpoint.hpp"
#include "tests/mpi_run.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
using stride::test::MpiRun;
namespace fs = std::filesystem;
using nlohmann::json;

#ifdef STRIDE_MPIEXEC

namespace {

// Conv, batch norm (2-D and 1-D) and dropout: every piece of state whose split over processes could go wrong.
const char* kBnDropout = R"({"name": "bn_dropout", "layers": [
  {"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel": 3, "pad": 1},
  {"name": "bn1", "type": "batchnorm2d"},
  {"name": "relu1", "type": "relu"},
  {"name": "pool1", "type": "max_pool2d", "kernel": 2, "stride": 2},
  {"name": "conv2", "type": "conv2d", "out_channels": 16, "kernel": 3, "pad": 1},
  {"name": "bn2", "type": "batchnorm2d"},
  {"name": "relu2", "type": "relu"},
  {"name": "pool2", "type": "max_pool2d", "kernel": 4, "stride": 4},
  {"name": "flatten", "type": "flatten"},
  {"name": "fc1", "type": "linear", "out_features": 32},
  {"name": "bn3", "type": "batchnorm1d"},
  {"name": "relu3", "type": "relu"},
  {"name": "drop", "type": "dropout", "p": 0.3},
  {"name": "fc2", "type": "linear", "out_features": 10}]})";

// Everything a run's result is: parameters (with batch-norm state), optimizer slots, and every number of
// metrics.jsonl but the timings and the description of the run's processes.
struct Outcome {
  Checkpoint final_ck;
  std::vector<json> metrics;
};

Outcome outcome_of(const fs::path& run) {
  Outcome o;
  o.final_ck = read_checkpoint((run / "final.h5").string());
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    for (const char* k : {"seconds", "img_per_s", "hosts", "processes"}) j.erase(k);
    o.metrics.push_back(j);
  }
  return o;
}

bool same_arrays(const std::map<std::string, StoredArray>& a, const std::map<std::string, StoredArray>& b,
                 std::string& first_difference) {
  if (a.size() != b.size()) {
    first_difference = "different parameter sets";
    return false;
  }
  for (const auto& [name, arr] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.values.size() != arr.values.size() ||
        std::memcmp(it->second.values.data(), arr.values.data(), arr.values.size() * sizeof(float)) != 0) {
      first_difference = name;
      return false;
    }
  }
  return true;
}

void check_same(const Outcome& want, const Outcome& got, const std::string& what) {
  INFO(what);
  std::string diff;
  CHECK_MESSAGE(same_arrays(want.final_ck.params, got.final_ck.params, diff), "/params differ first at " << diff);
  CHECK_MESSAGE(same_arrays(want.final_ck.optimizer, got.final_ck.optimizer, diff), "/optimizer differs first at " << diff);
  CHECK(want.final_ck.optimizer_steps == got.final_ck.optimizer_steps);
  REQUIRE(want.metrics.size() == got.metrics.size());
  for (size_t i = 0; i < want.metrics.size(); ++i) CHECK(want.metrics[i].dump() == got.metrics[i].dump());
}

struct Setup : test::TempDir {
  Setup() : TempDir("mpi") {
    std::ofstream(path / "bn_dropout.json") << kBnDropout;
    test::require_cifar_sample();
  }
};

}  // namespace

TEST_CASE("mpi: P = 1, 2, 4 at batch 128 and P = 1, 3 at batch 96, 1 and 2 threads: bitwise one process's run") {
  Setup tmp;
  // 700 samples: 6 steps of 128 (the last of 60 samples: 4 micro-batches, uneven over 3 or 4 processes) or
  // 8 of 96; 300 test samples in evaluation batches of 500 (one batch: the other processes evaluate nothing).
  const std::string common = " --data " + test::cifar_sample() + " --epochs 1 --limit-train 700 --limit-test 300 "
                             "--seed 5 --log-every 2 --no-progress";
  struct Optim {
    const char* name;
    const char* flags;
  };
  for (const Optim& opt : {Optim{"sgd", " --optimizer sgd --momentum 0.9 --lr 0.05"},
                           Optim{"adam", " --optimizer adam --lr 0.002"}}) {
    for (int64_t batch : {128, 96}) {
      const std::string args = " --model " + (tmp / "bn_dropout.json") + " --batch " + std::to_string(batch) +
                               opt.flags + common;
      const std::string ref = tmp / (std::string("ref-") + opt.name + std::to_string(batch));
      MpiRun::single("train" + args + " --threads 2 --out " + ref).require_ok();
      const Outcome want = outcome_of(ref);
      REQUIRE(want.metrics.size() >= 3);
      const std::vector<int> counts = batch == 128 ? std::vector<int>{1, 2, 4} : std::vector<int>{1, 3};
      for (int p : counts)
        for (int threads : {1, 2}) {
          const std::string out = ref + "-p" + std::to_string(p) + "t" + std::to_string(threads);
          MpiRun::mpi(p, "train" + args + " --threads " + std::to_string(threads) + " --out " + out).require_ok();
          check_same(want, outcome_of(out), std::string(opt.name) + " batch " + std::to_string(batch) + " P=" +
                                                std::to_string(p) + " threads " + std::to_string(threads));
        }
    }
  }
}

TEST_CASE("mpi: a few steps of cifar10_quick and resnet8, with each way of driving the allreduce") {
  Setup tmp;
  const std::string common = " --data " + test::cifar_sample() + " --epochs 1 --limit-train 400 --limit-test 100 "
                             "--seed 2 --optimizer sgd --momentum 0.9 --lr 0.02 --no-progress";
  for (const char* model : {"cifar10_quick", "resnet8"}) {
    const std::string ref = tmp / (std::string("ref-") + model);
    MpiRun::single(std::string("train --model ") + model + " --batch 128" + common + " --threads 2 --out " + ref)
        .require_ok();
    const Outcome want = outcome_of(ref);
    for (const char* progress : {"thread", "test", "none"}) {
      const std::string out = ref + "-" + progress;
      // Small buckets, so several are in flight while backward runs.
      MpiRun::mpi(2, std::string("train --model ") + model + " --batch 128" + common + " --threads 1 --bucket-mb 0.1 "
                         "--comm-progress " + progress + " --out " + out)
          .require_ok();
      check_same(want, outcome_of(out), std::string(model) + " --comm-progress " + progress);
    }
    const std::string out4 = ref + "-p4";
    MpiRun::mpi(4, std::string("train --model ") + model + " --batch 128" + common + " --threads 1 --out " + out4)
        .require_ok();
    check_same(want, outcome_of(out4), std::string(model) + " P=4");
  }
}

TEST_CASE("mpi: a run checkpointed with 2 processes resumes with 1 and with 4 as if never stopped") {
  Setup tmp;
  // 1400 samples in 11 steps of 128 per epoch, 2 epochs; the stop after step 5 is mid-epoch.
  const std::string args = "train --model " + (tmp / "bn_dropout.json") + " --data " + test::cifar_sample() +
                           " --epochs 2 --batch 128 --optimizer adam --lr 0.002 --seed 3 --limit-train 1400 "
                           "--limit-test 300 --log-every 3 --no-progress";
  MpiRun::single(args + " --threads 2 --out " + (tmp / "whole")).require_ok();
  const Outcome want = outcome_of(tmp.path / "whole");
  const MpiRun stopped = MpiRun::mpi(2, args + " --threads 1 --stop-after-step 5 --out " + (tmp / "half"));
  stopped.require_ok();
  CHECK(test::contains(stopped.output, "stride: stopped at epoch 1 step 5"));
  const Checkpoint half = read_checkpoint(tmp / "half/checkpoints/step-000000005.h5");
  CHECK(json::parse(half.run_config)["processes"] == 2);
  CHECK(json::parse(half.run_config)["micro_batch"] == 16);
  CHECK(json::parse(half.run_config)["hosts"].size() == 2);
  fs::copy(tmp.path / "half", tmp.path / "one", fs::copy_options::recursive);
  fs::copy(tmp.path / "half", tmp.path / "four", fs::copy_options::recursive);
  MpiRun::single(args + " --threads 2 --resume " + (tmp / "one")).require_ok();
  check_same(want, outcome_of(tmp.path / "one"), "resumed with 1 process");
  MpiRun::mpi(4, args + " --threads 1 --resume " + (tmp / "four")).require_ok();
  check_same(want, outcome_of(tmp.path / "four"), "resumed with 4 processes");
  // The epoch lines say how the run was spread when they were written.
  std::ifstream in(tmp.path / "four" / "metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line)) last = line;
  CHECK(json::parse(last)["processes"] == 4);
  CHECK(json::parse(last)["micro_batch"] == 16);
}

TEST_CASE("mpi: the acceptance run: cifar10_quick, one epoch of the CIFAR sample, P = 2 and 4 at 1 thread") {
  Setup tmp;
  const std::string args = "train --model cifar10_quick --data " + test::cifar_sample() +
                           " --epochs 1 --batch 128 --lr 0.01 --momentum 0.9 --seed 5 --no-progress";
  MpiRun::single(args + " --threads 2 --out " + (tmp / "one")).require_ok();
  const Outcome want = outcome_of(tmp.path / "one");
  for (int p : {2, 4}) {
    const std::string out = tmp / ("p" + std::to_string(p));
    const MpiRun r = MpiRun::mpi(p, args + " --threads 1 --out " + out);
    r.require_ok();
    check_same(want, outcome_of(out), "P=" + std::to_string(p));
    // Only rank 0 speaks.
    CHECK(test::count(r.output, "test accuracy ") == 1);
    CHECK(test::count(r.output, "stride: training model") == 1);
  }
}

TEST_CASE("mpi: bf16 training: P = 2 bitwise one process; a bf16 checkpoint resumes bitwise, or in fp32 saying so") {
  Setup tmp;
  // 700 samples: 6 steps of 128; the stop after step 3 is mid-epoch.
  const std::string args = "train --model " + (tmp / "bn_dropout.json") + " --data " + test::cifar_sample() +
                           " --epochs 1 --batch 128 --optimizer sgd --momentum 0.9 --lr 0.05 --seed 7 "
                           "--limit-train 700 --limit-test 300 --log-every 2 --no-progress";
  MpiRun::single(args + " --precision bf16 --threads 2 --out " + (tmp / "bf16")).require_ok();
  const Outcome want = outcome_of(tmp.path / "bf16");
  MpiRun::single(args + " --threads 2 --out " + (tmp / "fp32")).require_ok();
  std::string diff;
  CHECK_FALSE(same_arrays(want.final_ck.params, outcome_of(tmp.path / "fp32").final_ck.params, diff));  // bf16 ran
  CHECK(json::parse(want.final_ck.run_config)["precision"] == "bf16");
  MpiRun::mpi(2, args + " --precision bf16 --threads 1 --out " + (tmp / "p2")).require_ok();
  check_same(want, outcome_of(tmp.path / "p2"), "bf16 P=2");
  const MpiRun stopped = MpiRun::mpi(2, args + " --precision bf16 --threads 1 --stop-after-step 3 --out " + (tmp / "half"));
  stopped.require_ok();
  fs::copy(tmp.path / "half", tmp.path / "switch", fs::copy_options::recursive);
  const MpiRun same = MpiRun::single(args + " --precision bf16 --threads 2 --resume " + (tmp / "half"));
  same.require_ok();
  CHECK_FALSE(test::contains(same.output, "continues in"));
  check_same(want, outcome_of(tmp.path / "half"), "bf16 resumed with 1 process");
  // Without --precision a resume keeps the checkpoint's; --precision fp32 switches, and says so.
  const MpiRun other = MpiRun::single(args + " --precision fp32 --threads 2 --resume " + (tmp / "switch"));
  other.require_ok();
  CHECK(test::contains(other.output, "the checkpoint was trained in bf16; this run continues in fp32 from its fp32 "
                                     "master weights"));
  CHECK(json::parse(read_checkpoint(tmp / "switch/final.h5").run_config)["precision"] == "fp32");
}

// Issue 18: a restart knows only the run directory; and the wall-clock checkpoint cadence is rank 0's decision,
// whatever the other ranks' clocks say (each rank's test clock is set on its own through mpirun's MPMD form).
TEST_CASE("mpi: --resume RUN_DIR alone under mpirun -np 2 is bitwise; rank 0's clock decides --checkpoint-minutes") {
  Setup tmp;
  // 512 samples: 4 steps of 128 per epoch, 2 epochs.
  const std::string args = "train --model " + (tmp / "bn_dropout.json") + " --data " + test::cifar_sample() +
                           " --epochs 2 --batch 128 --optimizer adam --lr 0.002 --seed 5 --limit-train 512 "
                           "--limit-test 128 --log-every 2 --no-progress --checkpoint-epochs 0 --keep 20";
  MpiRun::single(args + " --threads 2 --out " + (tmp / "whole")).require_ok();
  const Outcome want = outcome_of(tmp.path / "whole");
  MpiRun::mpi(2, args + " --threads 1 --stop-after-step 3 --out " + (tmp / "half")).require_ok();
  MpiRun::mpi(2, "train --threads 1 --resume " + (tmp / "half")).require_ok();
  check_same(want, outcome_of(tmp.path / "half"), "resumed with only the run directory, 2 processes");

  // Rank 0 counts a minute per step, rank 1 none: a checkpoint every 2 steps. The other way round: none.
  auto mpmd = [&](const char* rank0, const char* rank1, const std::string& out) {
    const std::string one = std::string(" -np 1 env STRIDE_TEST_STEP_SECONDS=");
    const std::string cmd = std::string(STRIDE_MPIEXEC) + " --oversubscribe --allow-run-as-root" + one + rank0 + " " +
                            STRIDE_BINARY + " " + args + " --threads 1 --checkpoint-minutes 2 --out " + out + " :" +
                            one + rank1 + " " + STRIDE_BINARY + " " + args + " --threads 1 --checkpoint-minutes 2 --out " + out;
    MpiRun::run(cmd).require_ok();
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(fs::path(out) / "checkpoints"))
      if (e.path().extension() == ".h5") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  CHECK(mpmd("60", "0", tmp / "rank0") == std::vector<std::string>{"step-000000002.h5", "step-000000004.h5",
                                                                    "step-000000006.h5", "step-000000008.h5"});
  CHECK(mpmd("0", "60", tmp / "rank1") == std::vector<std::string>{"step-000000008.h5"});  // the end of the run only
  Outcome timed = outcome_of(tmp.path / "rank0");
  check_same(want, timed, "checkpoints every 2 steps by rank 0's clock");
}

TEST_CASE("mpi: stride bench --comm times the model's gradient allreduce") {
  const MpiRun r = MpiRun::mpi(2, "bench --comm --model cifar10_quick --steps 5");
  r.require_ok();
  CHECK(test::contains(r.output, "allreduce of cifar10_quick's gradient: 145578 elements, 2 processes"));
  CHECK(test::contains(r.output, "exact (exponent max + int64 sum"));
}

#else

TEST_CASE("mpi: tests need a build with MPI") {
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") FAIL("CI=true but stride was built without MPI: the MPI tests cannot run");
  MESSAGE("skipped: built without MPI");
}

#endif
