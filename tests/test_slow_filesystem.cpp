// A slow shared file system: every read of a .h5 file waits 40 ms (tests/shims/slow_reads.c, preloaded), as on a
// busy cluster file system. Valid checkpoints must still load for eval, predict, a resume in one process and a
// resume under `mpirun -np 2`, and both resumes must end bitwise as the uninterrupted run. stride once guarded
// libhdf5 with a wall-clock alarm, which refused exactly these files ("reading it took over 4 s"); the shim's
// own count shows each command really met that much delay. Data: the MNIST digits sample (a failure under
// CI=true when absent).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "io/checkpoint.hpp"
#include "tests/data_rule.hpp"
#include "tests/mpi_run.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
namespace fs = std::filesystem;

namespace {

const std::string kMnist = std::string(STRIDE_SHARED_DATA) + "/mnist-digits-sample";
constexpr int kDelayMs = 40;

// The environment that slows every .h5 read of a command, and logs how many reads were slowed to `log`.
std::string slow(const std::string& log) {
  return "env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 LD_PRELOAD=" +
         std::string(STRIDE_SLOW_READS_SHIM) + " STRIDE_SLOW_READ_MS=" + std::to_string(kDelayMs) +
         " STRIDE_SLOW_READ_LOG=" + log;
}

// The reads the shim delayed, summed over the processes that logged to `log`, which is then removed.
long delayed_reads(const std::string& log) {
  std::ifstream in(log);
  long pid = 0, n = 0, total = 0;
  while (in >> pid >> n) total += n;
  fs::remove(log);
  MESSAGE(total << " reads of a .h5 file were delayed by " << kDelayMs << " ms");
  return total;
}

void check_same_weights(const std::string& a_path, const std::string& b_path) {
  const Checkpoint a = read_checkpoint(a_path), b = read_checkpoint(b_path);
  CHECK(a.step == b.step);
  REQUIRE(a.params.size() == b.params.size());
  for (const auto& group : {&Checkpoint::params, &Checkpoint::optimizer}) {
    for (const auto& [key, arr] : a.*group) {
      const std::string& name = key;
      CAPTURE(name);
      REQUIRE((b.*group).count(name) == 1);
      const auto& other = (b.*group).at(name).values;
      REQUIRE(arr.values.size() == other.size());
      CHECK(std::memcmp(arr.values.data(), other.data(), arr.values.size() * sizeof(float)) == 0);
    }
  }
}

}  // namespace

TEST_CASE("slow file system: valid checkpoints load for eval, predict and resumes; the resumes stay bitwise") {
  if (!test::have_data(kMnist)) return;
  test::TempDir tmp("slowfs");
  std::ofstream(tmp / "tiny.json") << R"({"name": "tiny", "layers": [
    {"name": "conv1", "type": "conv2d", "out_channels": 4, "kernel": 5, "stride": 2},
    {"name": "bn1", "type": "batchnorm2d"},
    {"name": "relu1", "type": "relu"},
    {"name": "pool1", "type": "max_pool2d", "kernel": 2, "stride": 2},
    {"name": "flatten", "type": "flatten"},
    {"name": "fc", "type": "linear", "out_features": 10}]})";
  {
    std::ofstream pgm(tmp / "digit.pgm", std::ios::binary);
    pgm << "P5\n28 28\n255\n";
    for (int i = 0; i < 28 * 28; ++i) pgm.put(static_cast<char>((i % 28 > 10 && i % 28 < 17) ? 255 : 0));
  }
  const std::string args = "train --no-progress --model " + (tmp / "tiny.json") + " --data " + kMnist +
                           " --limit-train 128 --limit-test 32 --batch 16 --micro-batch 8 --epochs 2 --lr 0.05 --momentum 0.9 "
                           "--threads 1";
  // Written at full speed: the uninterrupted run, and one stopped mid-epoch to be resumed twice.
  test::MpiRun::single(args + " --out " + (tmp / "full")).require_ok();
  test::MpiRun::single(args + " --stop-after-step 11 --out " + (tmp / "half")).require_ok();
  fs::copy(tmp / "half", tmp / "half_mpi", fs::copy_options::recursive);
  const std::string log = tmp / "delayed.log";
  // 100 reads of 40 ms: each command below spends at least the 4 s the old guard allowed in its reads.
  const long enough = 4000 / kDelayMs;

  const auto eval = test::MpiRun::single("eval --weights " + (tmp / "full/final.h5") + " --data " + kMnist +
                                         " --limit 32", slow(log));
  eval.require_ok();
  CHECK(eval.output.find("accuracy") != std::string::npos);
  CHECK(delayed_reads(log) >= enough);

  const auto predict = test::MpiRun::single("predict --weights " + (tmp / "full/final.h5") + " " +
                                            (tmp / "digit.pgm") + " --top 3", slow(log));
  predict.require_ok();
  CHECK(predict.output.find("digit.pgm:") != std::string::npos);
  CHECK(delayed_reads(log) >= enough);

  test::MpiRun::single(args + " --resume " + (tmp / "half"), slow(log)).require_ok();
  CHECK(delayed_reads(log) >= enough);
  check_same_weights(tmp / "full/final.h5", tmp / "half/final.h5");

#ifdef STRIDE_MPIEXEC
  test::MpiRun::mpi(2, args + " --resume " + (tmp / "half_mpi"), slow(log)).require_ok();
  CHECK(delayed_reads(log) >= 2 * enough);  // every rank reads the checkpoint
  check_same_weights(tmp / "full/final.h5", tmp / "half_mpi/final.h5");
#else
  FAIL("this build has no MPI: the resume under mpirun -np 2 was not tried");
#endif
}
