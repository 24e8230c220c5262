// stride across network hosts (issue 17): mpirun over TCP between network-namespace hosts and a real Slurm
// 22.05 cluster on them (cluster/testbed/testbed). The weights are bitwise those of one process; the project's
// own cluster/slurm/train.sbatch runs unmodified, every usage line of its comments as written (with the
// sizes its comments give for the testbed's nodes); logs written to files hold no terminal codes. CTest
// label `cluster`. Runs as root, as CI does; where namespaces cannot be made the tests fail with the reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "io/checkpoint.hpp"
#include "tests/mpi_run.hpp"
#include "tests/temp_dir.hpp"
#include "tests/testbed.hpp"

using namespace stride;
using stride::test::MpiRun;
using stride::test::Testbed;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kStride = STRIDE_BINARY;

// A CIFAR-10 directory of the first `records` records of each file of the CIFAR sample: 5 x records training
// and `records` test images, for runs of many short epochs.
void write_cifar_subset(const fs::path& dir, int records) {
  fs::create_directories(dir);
  for (const char* name :
       {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}) {
    std::ifstream in(fs::path(test::cifar_sample()) / name, std::ios::binary);
    std::string bytes(static_cast<size_t>(records) * 3073, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(in.good());
    std::ofstream(dir / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
}

void check_same_params(const fs::path& want_run, const fs::path& got_run, const std::string& what) {
  INFO(what);
  const Checkpoint want = read_checkpoint((want_run / "final.h5").string());
  const Checkpoint got = read_checkpoint((got_run / "final.h5").string());
  std::string diff;
  CHECK_MESSAGE(test::same_params(want, got, diff), "/params differ first at " << diff);
  CHECK(want.optimizer_steps == got.optimizer_steps);
}

std::vector<std::string> hosts_of(const fs::path& run) {
  return json::parse(read_checkpoint((run / "final.h5").string()).run_config)["hosts"].get<std::vector<std::string>>();
}

}  // namespace

TEST_CASE("cluster: mpirun over TCP, 3 hosts x 1 process and 2 hosts x 2, gives the weights of one process") {
  test::require_cifar_sample();
  test::TempDir tmp("cluster-mpirun");
  const std::string args = "train --model cifar10_quick --data " + test::cifar_sample() +
                           " --epochs 1 --limit-train 1024 --limit-test 256 --batch 128 --lr 0.01 --momentum 0.9 --seed 5";
  MpiRun::single(args + " --threads 2 --out " + (tmp / "one")).require_ok();
  Testbed bed(3);
  {
    const MpiRun r = bed.mpirun(3, "--map-by node", args + " --threads 1 --out " + (tmp / "three"), tmp / "three.log");
    r.require_ok();
    check_same_params(tmp.path / "one", tmp.path / "three", "3 hosts x 1 process");
    CHECK(hosts_of(tmp.path / "three") == std::vector<std::string>{"h1", "h2", "h3"});
    const std::string log = test::read_file(tmp.path / "three.log");
    INFO(log);
    CHECK(test::count(log, "stride: 3 processes of 1 thread") == 1);
    CHECK(test::count(log, "epoch 1/1: loss") == 1);
    CHECK(log.find('\033') == std::string::npos);  // no progress-bar codes in a log file (rank 0 has a pty)
  }
  {
    // Two hosts of the three, two processes on each.
    const std::string addrs = bed.var("TESTBED_ADDRS");
    const std::string two = addrs.substr(0, addrs.rfind(','));
    const MpiRun r = bed.mpirun(4, "--host " + two + " --map-by ppr:2:node", args + " --threads 1 --out " + (tmp / "four"));
    r.require_ok();
    check_same_params(tmp.path / "one", tmp.path / "four", "2 hosts x 2 processes");
    CHECK(hosts_of(tmp.path / "four") == std::vector<std::string>{"h1", "h1", "h2", "h2"});
  }
  {
    // A process bound to fewer cores than its host has: rank 0's log names every process's threads.
    const std::string small = "train --model cifar10_quick --data " + test::cifar_sample() +
                              " --epochs 1 --limit-train 128 --limit-test 32 --batch 64 --progress none --out " +
                              (tmp / "bound");
    const MpiRun r = bed.run(test::testbed_script() + " mpirun --bind-to none -np 1 taskset -c 0 " + kStride + " " +
                             small + " : -np 1 " + kStride + " " + small);
    r.require_ok();
    CHECK(test::count(r.output, "stride: 2 processes of 1, 2 threads (per process)") == 1);
  }
}

TEST_CASE("cluster: Slurm runs cluster/slurm/train.sbatch as its comments say: 2 and 4 nodes, resume on 1") {
  test::require_cifar_sample();
  test::TempDir tmp("cluster-slurm");
  // 160 training images: an epoch is one step of 256 (10 micro-batches), so the sbatch's 30 epochs are short.
  write_cifar_subset(tmp.path / "cifar", 32);
  MpiRun::single("convert --from cifar10 " + (tmp / "cifar") + " --out " + (tmp / "cifar.h5")).require_ok();
  // What every usage line must equal: one process with the sbatch's settings.
  MpiRun::single("train --model cifar10_quick --data " + (tmp / "cifar.h5") +
                 " --batch 256 --epochs 30 --threads 2 --checkpoint-epochs 0 --progress none --out " + (tmp / "one"))
      .require_ok();

  // The usage lines of the sbatch's comments, in order ("#   ...sbatch ...", without a trailing comment).
  const std::string sbatch_path = std::string(STRIDE_REPO_DIR) + "/cluster/slurm/train.sbatch";
  // And the sizes its comments give for the testbed's nodes: a comment line of flags alone.
  std::vector<std::string> usage;
  std::string sizes;
  {
    std::ifstream in(sbatch_path);
    std::string line;
    const std::regex usage_line(R"(^#\s+((?:\S+=\S+\s+)*sbatch\s.*?)\s*(#.*)?$)");
    const std::regex sizes_line(R"(^#\s+((?:--[a-z-]+=\S+\s*)+)$)");
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_match(line, m, usage_line)) usage.push_back(m[1]);
      else if (std::regex_match(line, m, sizes_line)) sizes = m[1];
    }
  }
  INFO("usage lines: " << usage.size() << ", testbed sizes: " << sizes);
  REQUIRE(usage.size() == 4);
  REQUIRE(sizes.find("--cpus-per-task=") != std::string::npos);
  // They run from a directory holding the repository's cluster/ (as from a checkout), with STRIDE and DATA
  // set, and the sizes the sbatch's comments give for the testbed after `sbatch`: its nodes have this
  // machine's 2 CPUs, not the two 16-core sockets of the #SBATCH lines, and Slurm 22.05's sbatch takes
  // --ntasks-per-node and --cpus-per-task from no environment variable. --wait makes sbatch return the job's
  // exit status.
  const fs::path work = tmp.path / "work";
  fs::create_directories(work);
  fs::create_directory_symlink(fs::path(STRIDE_REPO_DIR) / "cluster", work / "cluster");
  Testbed bed(4, "--slurm");
  auto submit = [&](const std::string& line, const std::string& extra_args) {
    const size_t at = line.find("sbatch ");
    const std::string command = line.substr(0, at) + "sbatch --wait " + sizes + " " +
                                line.substr(at + 7) + extra_args;
    const MpiRun r = bed.run("cd " + work.string() + " && STRIDE=" + kStride + " DATA=" + (tmp / "cifar.h5") +
                             " " + command);
    INFO(command);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::smatch m;
    REQUIRE(std::regex_search(r.output, m, std::regex("Submitted batch job ([0-9]+)")));
    const std::string out = test::read_file(work / ("stride-" + m[1].str() + ".out"));
    return std::make_pair(m[1].str(), out);
  };

  {  // sbatch cluster/slurm/train.sbatch: the defaults, 2 nodes
    const auto submitted_job = submit(usage[0], "");
    const std::string& job = submitted_job.first;
    const std::string& out = submitted_job.second;
    INFO(out);
    CHECK(test::count(out, "epoch 30/30: loss") == 1);
    CHECK(test::count(out, "epoch 1/30 step 1/1 loss") == 1);
    CHECK(out.find('\033') == std::string::npos);
    // srun is given --cpus-per-task (Slurm 22.05 does not pass the job's on), so each task's binding has its
    // 2 CPUs and --threads 0 runs 2 threads. Rank 0 knows every task's count and names them when they differ
    // ("2, 1 threads (per process)"), so this line is every task's report, not rank 0's alone.
    CHECK(test::count(out, "stride: 2 processes of 2 threads") == 1);
    check_same_params(tmp.path / "one", work / "runs" / ("slurm-" + job), usage[0]);
    CHECK(hosts_of(work / "runs" / ("slurm-" + job)) == std::vector<std::string>{"h1", "h2"});
  }
  {  // sbatch --nodes=4 cluster/slurm/train.sbatch --epochs 30
    const auto submitted_job = submit(usage[1], "");
    const std::string& job = submitted_job.first;
    const std::string& out = submitted_job.second;
    INFO(out);
    CHECK(test::count(out, "stride: 4 processes of 2 threads") == 1);
    check_same_params(tmp.path / "one", work / "runs" / ("slurm-" + job), usage[1]);
  }
  {  // RUN_DIR=... sbatch cluster/slurm/train.sbatch, stopped after step 12 as a time limit would, then
     // RUN_DIR=... sbatch --nodes=1 cluster/slurm/train.sbatch --resume ...: continues on 1 node
    const auto submitted_job1 = submit(usage[2], " --stop-after-step 12");
    const std::string& out1 = submitted_job1.second;
    INFO(out1);
    CHECK(test::count(out1, "stride: stopped at epoch ") == 1);
    CHECK(test::count(out1, " step 12; checkpoint ") == 1);
    const auto submitted_job2 = submit(usage[3], "");
    const std::string& out2 = submitted_job2.second;
    INFO(out2);
    CHECK(test::count(out2, "stride: 1 process of 2 threads") == 1);
    CHECK(test::count(out2, "epoch 30/30: loss") == 1);
    check_same_params(tmp.path / "one", work / "runs" / "cifar", "2 nodes, then resumed on 1");
  }
  // Nothing of the cluster stays: no slurmd, slurmctld or munged, no namespace holder, link or state.
  bed.down();
  CHECK(bed.leftovers() == "");
}

TEST_CASE("cluster: stride bench --comm across 2 and 3 hosts at 1 Gbit/s and 100 Mbit/s matches the network model") {
  // The model's constants, fitted on this testbed by scripts/network_model.py (docs/cluster.md).
  const std::string model_path = std::string(STRIDE_REPO_DIR) + "/bench/network_model.json";
  REQUIRE_MESSAGE(fs::exists(model_path), model_path << " is missing (scripts/network_model.py writes it)");
  const json model = json::parse(test::read_file(model_path));
  Testbed bed(3);
  const std::string addrs = bed.var("TESTBED_ADDRS");
  const json& fits = model["fits"];
  for (const std::string rate : {"1gbit", "100mbit"}) {
    const MpiRun capped = bed.run(test::testbed_script() + " rate " + rate);
    REQUIRE_MESSAGE(capped.exit_code == 0, capped.output);
    const double beta = fits[rate]["beta_MB_per_s"].get<double>() * 1e6;
    const double bucket = fits[rate]["bucket_bytes"].get<double>();
    for (int hosts : {2, 3}) {
      const std::string host_list = hosts == 3 ? addrs : addrs.substr(0, addrs.rfind(','));
      // alpha is the hosts' software: where processes outnumber the cores, every ring step waits for one to
      // be woken on a shared core, as measured with 2 hosts pinned to one core (scripts/network_model.py).
      const bool shared_cores = hosts > static_cast<int>(std::thread::hardware_concurrency());
      const json& veth = fits[shared_cores ? "none_one_core" : "none"];
      const double alpha = veth["alpha_us"].get<double>() * 1e-6;
      const double beta_veth = veth["beta_MB_per_s"].get<double>() * 1e6;
      double low = 0, high = 0, measured = 1e9;
      // The link's time is the floor, and other jobs on the machine only add to it: so the fastest repeat
      // is compared (as the model was fitted), and a ceiling missed is measured again, up to 5 launches.
      // The eager limit is cluster/mpirun.md's TCP recipe: without it OpenMPI's rendezvous adds a wait to
      // every ring step on 3 hosts that the model leaves out (docs/cluster.md, "Why 3 and 4 hosts took
      // longer"). Measured on this shared 2-core machine (docs/cluster.md, "The network model, measured"):
      // the fastest repeats of 1.16 MB within +2% of the model at 100 Mbit/s and 1 Gbit/s, 2 to 4 hosts, and
      // 0.98-1.02x its upper end in this test (4 runs, one beside a CPU-bound process). At 1 Gbit/s
      // the CPU shows when other jobs take it (with two CPU-bound processes beside it, 2.0-2.6x, which this
      // test does not survive: it needs the machine's two cores, RUN_SERIAL).
      const double floor = 0.9;
      const double ceiling = rate == "100mbit" ? 1.25 : 1.35;
      for (int attempt = 0; attempt < 5 && !(measured < ceiling * high); ++attempt) {
        const MpiRun r = bed.mpirun(hosts, "--host " + host_list + " --map-by node --mca btl_tcp_eager_limit 4194304",
                                    "bench --comm --json --model cifar10_quick --steps 9");
        r.require_ok();
        const json j = json::parse(r.output.substr(r.output.rfind("{\"")));
        REQUIRE(j["processes"] == hosts);
        CHECK(j["algorithm"] == "ring (stride's choice)");
        // The ring that stride runs (cluster/allreduce_algorithm.hpp), twice: the exponents' MPI_MAX and the
        // int64 MPI_SUM of S bytes, L = 2 (n-1)/n S of them on each link; tbf's bucket, when full, lets up
        // to B of them through at the veth's speed.
        const double n = hosts;
        const double link_bytes = 2 * (n - 1) / n * j["bytes"].get<double>();
        high = 4 * (n - 1) * alpha + link_bytes / beta;
        low = high - std::min(link_bytes, bucket) * (1 / beta - 1 / beta_veth);
        measured = std::min(measured, j["exact_min_ms"].get<double>() / 1e3);
        MESSAGE(rate << ", " << hosts << " hosts, launch " << attempt + 1 << ": measured " << 1e3 * measured
                     << " ms, model " << 1e3 * low << "-" << 1e3 * high << " ms");
      }
      INFO(rate << ", " << hosts << " hosts: measured " << 1e3 * measured << " ms, model " << 1e3 * low << "-"
                << 1e3 * high << " ms");
      // Below the floor: faster than the link (the cap or the model broke). Above the ceiling five times:
      // a slower algorithm (OpenMPI's own binomial tree took 2.1x on 2 hosts) or a slower exchange.
      CHECK(measured > floor * low);
      CHECK(measured < ceiling * high);
    }
  }
}
