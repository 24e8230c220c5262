#include "cluster/session.hpp"

#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cluster/mpi_wait.hpp"
#include "framework/core/errors.hpp"

namespace stride::cluster {

namespace {

Session* g_current = nullptr;

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

}  // namespace

bool launched_by_mpi() {
  // OpenMPI's mpirun sets OMPI_COMM_WORLD_*; MPICH/Hydra and srun --mpi=pmi2 set PMI_*; PMIx launchers
  // (srun --mpi=pmix, prterun) set PMIX_RANK.
  if (env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE") || env_set("PMI_RANK"))
    return true;
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (tasks && std::atoi(tasks) > 1)
    throw ConfigError("started by srun with " + std::string(tasks) +
                      " tasks but without an MPI plugin: every task would train alone and write the same files; "
                      "use srun --mpi=pmix (see cluster/slurm/train.sbatch)");
  return false;
}

Session::Session(int& argc, char**& argv) {
  g_current = this;
  hosts_ = {this_host()};
  default_threads_all_ = {default_threads()};
  if (!launched_by_mpi()) return;
  int provided = 0;
  detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  active_ = true;
  thread_multiple_ = provided >= MPI_THREAD_MULTIPLE;
  // Errors come back as codes (and become exceptions), not as an abort inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  detail::init_waits(MPI_COMM_WORLD, timeout_);
  MPI_Comm local;
  detail::check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
                "MPI_Comm_split_type");
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_free(&local);
  constexpr int kName = 256;
  std::string mine = hosts_[0];
  mine.resize(kName - 1);
  std::vector<char> all(static_cast<size_t>(kName * size_));
  MPI_Request req;
  detail::enter_collective("gathering the host names");
  detail::check(MPI_Iallgather(mine.c_str(), kName, MPI_CHAR, all.data(), kName, MPI_CHAR, MPI_COMM_WORLD, &req),
                "MPI_Iallgather");
  detail::wait(req);
  hosts_.clear();
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + r * kName);
  detail::set_wait_hosts(hosts_);
  // What --threads 0 means on each process (its launcher's binding), for run_config: a task that got fewer
  // cores than asked for shows there, not only in its speed.
  const int mine_threads = default_threads();
  default_threads_all_.assign(static_cast<size_t>(size_), 0);
  detail::enter_collective("gathering the thread counts");
  detail::check(MPI_Iallgather(&mine_threads, 1, MPI_INT, default_threads_all_.data(), 1, MPI_INT, MPI_COMM_WORLD, &req),
                "MPI_Iallgather");
  detail::wait(req);
}

Session::~Session() {
  if (active_ && !finalized_) {
    detail::finish_waits();
    MPI_Finalize();
  }
  g_current = nullptr;
}

Session& Session::current() {
  if (!g_current) throw Error("cluster: no Session (create one in main)");
  return *g_current;
}

void Session::set_timeout(double seconds) {
  timeout_ = seconds;
  if (active_) detail::set_wait_timeout(seconds);
}

int Session::default_threads() const {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  const int node = online > 0 ? static_cast<int>(online) : 1;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int mask = CPU_COUNT(&set);
    if (mask > 0 && mask < node) return mask;  // a launcher bound this process: its cores
  }
  return std::max(1, node / std::max(1, local_size_));
}

int Session::fail(const std::string& message, int code) {
  if (!active_) {
    std::cerr << "error: " << message << "\n" << std::flush;
    return code;
  }
  // One write, so the lines of several processes do not interleave.
  std::cerr << ("rank " + std::to_string(rank_) + ": error: " + message + "\n") << std::flush;
  // Did every process fail? Then all of them exit cleanly with the code; else this one takes the job down.
  // (The world communicator carries no other collective after the start: the reducer uses its own.)
  MPI_Request req = MPI_REQUEST_NULL;
  bool together = false;
  if (MPI_Ibarrier(MPI_COMM_WORLD, &req) == MPI_SUCCESS) {
    const auto start = std::chrono::steady_clock::now();
    detail::Backoff backoff;
    while (std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
      int flag = 0;
      if (MPI_Test(&req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
      if (flag) {
        together = true;
        break;
      }
      backoff.pause();
    }
  }
  if (together) {
    detail::finish_waits();
    MPI_Finalize();
    finalized_ = true;
    return code;
  }
  MPI_Abort(MPI_COMM_WORLD, code);
  return code;
}

}  // namespace stride::cluster
