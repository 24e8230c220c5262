// How cluster/mpirun-resilient.sh and cluster/slurm/train.sbatch plan a launch and a restart (issue 18),
// without MPI or Slurm: a fake mpirun (MPIRUN=...) and fake srun/scontrol (first on PATH) record what they are
// asked to start and fail as told. What the real launchers do with it is tests/test_cluster_faults.cpp's.
// Checked: every process gets at least one micro-batch (fewer per host otherwise, and the log says so), and a
// restart runs `stride train --resume RUN_DIR` with only the flags that are not stored in the checkpoint.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/mpi_run.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using stride::test::CommandResult;
using stride::test::count;
using stride::test::run_command;
namespace fs = std::filesystem;

namespace {

const std::string kRepo = STRIDE_REPO_DIR;

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_script(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  fs::permissions(path, fs::perms::owner_all);
}

// A launch (not a probe) fails with the status in FAKE/status.N (N counts launches; 0 when absent), and the
// first failing one leaves a step-20 checkpoint behind, as a run that died after it would. A probe of a host
// or node named in FAKE/down fails. Every call is logged to FAKE/calls.
const char* kFakeCommon = R"SH(fake=$(dirname "$0")
n=$(( $(cat "$fake/launches" 2>/dev/null || echo 0) + 1 ))
launch() {  # launch RUN_DIR ARGS...: log the launch and exit as told
  echo "$n" > "$fake/launches"
  local run=$1; shift
  echo "launch $n: $*" >> "$fake/calls"
  status=$(cat "$fake/status.$n" 2>/dev/null || echo 0)
  if [ "$status" -ne 0 ] && [ ! -e "$run/checkpoints/latest" ]; then
    mkdir -p "$run/checkpoints"; echo step-000000020.h5 > "$run/checkpoints/latest"
  fi
  exit "$status"
}
probe() {  # probe HOST: log the probe and fail when HOST is down
  echo "probe $1" >> "$fake/calls"
  grep -qx "$1" "$fake/down" 2>/dev/null && exit 1
  exit 0
}
)SH";

}  // namespace

TEST_CASE("mpirun-resilient.sh: fewer processes per host when the slots outnumber the micro-batches; a restart resumes by run directory") {
  stride::test::TempDir tmp("restart-mpirun");
  const fs::path fake = tmp.path / "fake";
  fs::create_directories(fake);
  // The fake mpirun: a probe is `... --host H -np 1 hostname`; a launch has --hostfile F -np P.
  write_script(fake / "mpirun", std::string("#!/bin/bash\n") + kFakeCommon + R"SH(
args=("$@")
for ((i = 0; i < $#; i++)); do
  case "${args[$i]}" in
    --host) host=${args[$((i + 1))]} ;;
    --hostfile) hostfile=${args[$((i + 1))]} ;;
    -np) np=${args[$((i + 1))]} ;;
    --out) run=${args[$((i + 1))]} ;;
    --resume) run=${args[$((i + 1))]} ;;
  esac
done
[ "${args[-1]}" = hostname ] && probe "$host"
echo "hostfile $(paste -sd, "$hostfile")" >> "$fake/calls"
launch "$run" "-np $np ${args[*]}"
)SH");
  std::ofstream(tmp.path / "hosts") << "# three hosts of 2 slots\nh1 slots=2\nh2 slots=2\nh3 slots=2\n";
  const std::string run = tmp / "run";
  const std::string wrapper = "MPIRUN=" + (fake / "mpirun").string() + " " + kRepo + "/cluster/mpirun-resilient.sh " +
                              (tmp / "hosts") + " --some-mpirun-option -- stride train --model cifar10_quick --data D " +
                              "--batch 64 --threads 1 --comm-timeout 40 --seed 5 --progress=lines --no-progress --out " + run;

  SUBCASE("6 slots, 4 micro-batches: 4 processes, 2 1 1 per host") {
    const CommandResult r = run_command(wrapper);
    const std::string calls = read(fake / "calls");
    INFO(r.output);
    INFO(calls);
    CHECK(r.exit_code == 0);
    CHECK(count(r.output, "6 slots but a step has 4 micro-batches (--batch 64, --micro-batch 16): every process needs "
                          "one, so 4 processes (2 1 1 per host)") == 1);
    CHECK(count(calls, "hostfile h1 slots=2,h2 slots=1,h3 slots=1\n") == 1);
    CHECK(count(calls, "launch 1: -np 4 --some-mpirun-option ") == 1);
    CHECK(count(calls, "launch ") == 1);
  }
  SUBCASE("the first launch fails, h1 does not answer: a restart on h2 and h3 (4 slots), --resume RUN_DIR and this launch's flags only") {
    std::ofstream(fake / "status.1") << "205\n";
    std::ofstream(fake / "down") << "h1\n";
    const CommandResult r = run_command(wrapper);
    const std::string calls = read(fake / "calls");
    INFO(r.output);
    INFO(calls);
    CHECK(r.exit_code == 0);
    CHECK(count(calls, "probe h") == 3);
    CHECK(count(r.output, "restart 1 of 3: mpirun exited with status 205; hosts lost: h1 (ranks 0-1); resuming from "
                          "step 20 (" + run + "/checkpoints/step-000000020.h5) on 2 hosts: h2 h3") == 1);
    // 4 slots for 4 micro-batches: no fewer processes this time.
    CHECK(count(r.output, "slots but a step has") == 1);
    CHECK(count(calls, "hostfile h2 slots=2,h3 slots=2\n") == 1);
    CHECK(count(calls, "launch 2: -np 4 --some-mpirun-option --mca oob_tcp_keepalive_time 20 --mca "
                       "oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 3 --hostfile ") == 1);
    CHECK(count(calls, " -np 4 stride train --resume " + run +
                       " --threads 1 --comm-timeout 40 --progress=lines --no-progress\n") == 1);
  }
  SUBCASE("MAX_RESTARTS=0: the wrapper stops with the short resume command") {
    std::ofstream(fake / "status.1") << "1\n";
    const CommandResult r = run_command("MAX_RESTARTS=0 " + wrapper);
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(count(r.output, "The newest checkpoint is step 20; resume with: " + kRepo + "/cluster/mpirun-resilient.sh " +
                          (tmp / "hosts") + " --some-mpirun-option -- stride train --resume " + run +
                          " --threads 1 --comm-timeout 40 --progress=lines --no-progress\n") == 1);
  }
}

TEST_CASE("train.sbatch: fewer tasks per node when they outnumber the micro-batches; a restart resumes by run directory") {
  stride::test::TempDir tmp("restart-sbatch");
  const fs::path fake = tmp.path / "fake";
  fs::create_directories(fake);
  write_script(fake / "scontrol", "#!/bin/bash\n[ \"$1 $2\" = \"show hostnames\" ] && tr , '\\n' <<< \"$3\"\n");
  // The fake srun: a probe runs `true` on one node; a launch runs stride.
  write_script(fake / "srun", std::string("#!/bin/bash\n") + kFakeCommon + R"SH(
args=("$@")
for ((i = 0; i < $#; i++)); do
  case "${args[$i]}" in
    --nodelist=*) nodes=${args[$i]#--nodelist=} ;;
    --out) run=${args[$((i + 1))]} ;;
    --resume) run=${args[$((i + 1))]} ;;
  esac
done
[ "${args[-1]}" = true ] && probe "$nodes"
[ -n "$(cat "$fake/status.$n" 2>/dev/null)" ] && echo "srun: error: h2: task 1: Exited with exit code 1" >&2
launch "$run" "${args[*]}"
)SH");
  const std::string run = tmp / "run";
  auto sbatch = [&](const std::string& nodes, int per_node, const std::string& stride_args) {
    return run_command("cd " + tmp.path.string() + " && PATH=" + fake.string() + ":$PATH SLURM_JOB_ID=7 " +
                       "SLURM_JOB_NODELIST=" + nodes + " SLURM_NTASKS_PER_NODE=" + std::to_string(per_node) +
                       " SLURM_CPUS_PER_TASK=2 STRIDE=stride DATA=D RUN_DIR=" + run + " GRACE_SECONDS=1 bash " + kRepo +
                       "/cluster/slurm/train.sbatch " + stride_args);
  };

  SUBCASE("3 nodes x 2 tasks, batch 64 (4 micro-batches): 1 task per node") {
    const CommandResult r = sbatch("h1,h2,h3", 2, "--batch 64");
    const std::string calls = read(fake / "calls");
    INFO(r.output);
    INFO(calls);
    CHECK(r.exit_code == 0);
    CHECK(count(r.output, "6 tasks but a step has 4 micro-batches (--batch 64, --micro-batch 16): every task needs "
                          "one, so 1 per node on 3 nodes") == 1);
    CHECK(count(calls, "launch 1: --mpi=pmix --nodes=3 --nodelist=h1,h2,h3 --ntasks=3 --ntasks-per-node=1 ") == 1);
  }
  SUBCASE("3 nodes x 1 task, batch 32 (2 micro-batches): 2 nodes; after a failure, --resume RUN_DIR and this launch's flags only") {
    std::ofstream(fake / "status.1") << "1\n";
    std::ofstream(fake / "down") << "h2\n";
    const CommandResult r = sbatch("h1,h2,h3", 1, "--batch 32 --epochs 2 --threads 1 --comm-timeout 20");
    const std::string calls = read(fake / "calls");
    INFO(r.output);
    INFO(calls);
    CHECK(r.exit_code == 0);
    CHECK(count(r.output, "3 tasks but a step has 2 micro-batches (--batch 32, --micro-batch 16): every task needs "
                          "one, so 1 per node on 2 nodes") == 1);
    CHECK(count(calls, "launch 1: --mpi=pmix --nodes=2 --nodelist=h1,h2 --ntasks=2 --ntasks-per-node=1 ") == 1);
    CHECK(count(calls, "probe h") == 2);
    CHECK(count(r.output, "restart 1 of 3: the step failed (srun status 1); nodes lost: h2; resuming from step 20 on "
                          "1 nodes: h1") == 1);
    CHECK(count(calls, "launch 2: --mpi=pmix --nodes=1 --nodelist=h1 --ntasks=1 --ntasks-per-node=1 ") == 1);
    CHECK(count(calls, " stride train --resume " + run + " --threads 0 --progress lines --threads 1 --comm-timeout 20\n") == 1);
  }
  SUBCASE("a requeued job (a checkpoint in RUN_DIR) resumes by run directory; MAX_RESTARTS=0 stops with the short resume command") {
    fs::create_directories(run + "/checkpoints");
    std::ofstream(run + "/checkpoints/latest") << "step-000000020.h5\n";
    std::ofstream(fake / "status.1") << "1\n";
    const CommandResult r = run_command("cd " + tmp.path.string() + " && MAX_RESTARTS=0 PATH=" + fake.string() +
                                        ":$PATH SLURM_JOB_ID=7 SLURM_RESTART_COUNT=1 SLURM_JOB_NODELIST=h1 "
                                        "SLURM_NTASKS_PER_NODE=1 STRIDE=stride DATA=D RUN_DIR=" + run +
                                        " GRACE_SECONDS=1 bash " + kRepo + "/cluster/slurm/train.sbatch --batch 32 --threads 1");
    const std::string calls = read(fake / "calls");
    INFO(r.output);
    INFO(calls);
    CHECK(r.exit_code == 1);
    CHECK(count(r.output, "job 7 (restart count 1) resumes " + run + " from step 20\n") == 1);
    CHECK(count(calls, " stride train --resume " + run + " --threads 0 --progress lines --threads 1\n") == 1);
    CHECK(count(r.output, "resume with: RUN_DIR=" + run + " sbatch cluster/slurm/train.sbatch --resume " + run +
                          " --threads 1\n") == 1);
  }
}
