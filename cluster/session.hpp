#pragma once
// The MPI session of one `stride` process (docs/cluster.md). `stride` initializes MPI only when a launcher
// started it — mpirun/mpiexec (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK) or srun with an MPI plugin
// (PMIX_RANK, PMI_RANK) — so a plain `stride train` never touches MPI and behaves exactly as without it.
// This header has no MPI types: apps/ uses it, and only cluster/*.cpp include <mpi.h>.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/gradient_reducer.hpp"

namespace stride::cluster {

// Whether the environment says an MPI launcher started this process. Throws ConfigError for srun without an
// MPI plugin (SLURM_STEP_NUM_TASKS > 1 but no PMI variables), which would start independent runs that all
// write the same files.
bool launched_by_mpi();

class Session {
 public:
  // MPI_Init_thread (MPI_THREAD_MULTIPLE requested) when launched_by_mpi(), else a one-process session.
  // Gathers every process's host name. There is one per process: current() returns it.
  Session(int& argc, char**& argv);
  ~Session();  // MPI_Finalize
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  static Session& current();

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Processes on this node and this process's index among them.
  int local_size() const { return local_size_; }
  int local_rank() const { return local_rank_; }
  // One host name per process, in rank order (this host alone without MPI).
  const std::vector<std::string>& hosts() const { return hosts_; }
  // Whether MPI granted MPI_THREAD_MULTIPLE (needed by the communication thread).
  bool thread_multiple() const { return thread_multiple_; }

  // Threads for `--threads 0`: the CPUs of this process's affinity mask when a launcher bound it to fewer than
  // the node has; else the node's CPUs divided by the processes on the node (at least 1).
  int default_threads() const;
  // default_threads() of every process, in rank order, gathered at the start (this process's alone without MPI).
  const std::vector<int>& default_threads_of_all() const { return default_threads_all_; }

  // Seconds a collective may wait for the other processes before the job is aborted (--comm-timeout).
  void set_timeout(double seconds);
  double timeout() const { return timeout_; }

  // Reports an error that ends this process: "error: MESSAGE" on stderr without MPI, "rank R: error: MESSAGE"
  // with it. With MPI, when every process fails within a few seconds (a bad flag: each one sees it) they all
  // finalize and exit with `code`; otherwise this process calls MPI_Abort(code), which ends the whole job, so
  // no process hangs in a collective. Returns `code` (for main to return) when it does not abort.
  int fail(const std::string& message, int code);

 private:
  bool active_ = false, thread_multiple_ = false, finalized_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::vector<std::string> hosts_;
  std::vector<int> default_threads_all_;
  double timeout_ = 300;
};

// How the data-parallel reducer drives its non-blocking allreduces while backward runs (OpenMPI has no
// asynchronous progress for shared memory or TCP).
enum class CommProgress {
  thread,  // a communication thread runs the bucket exchanges (needs MPI_THREAD_MULTIPLE)
  test,    // MPI_Test between layers, from the training thread
  none,    // no overlap: every bucket is exchanged after backward (the baseline that measures the overlap)
};
CommProgress parse_comm_progress(const std::string& name);  // "thread" | "test" | "none"

struct ReducerOptions {
  CommProgress progress = CommProgress::thread;
};

// The data-parallel GradientReducer over every process of the session: contiguous micro-batch shares, the
// exact sum by MPI_Allreduce on int64 (per bucket, started as soon as backward has finished it), rows by
// MPI_Allgatherv, output on rank 0. Reads the fault switch STRIDE_FAULT_RANK / STRIDE_FAULT_STEP
// (STRIDE_FAULT_MODE throw | hang | kill, default throw): that rank fails as global step STRIDE_FAULT_STEP
// begins. Every collective waits at most timeout() seconds.
std::unique_ptr<GradientReducer> make_data_parallel_reducer(Session& session, const ReducerOptions& options);

// What one `stride bench --comm` measured: medians over the repeats, in seconds, as rank 0 saw them.
// Each time is the slowest process's, per repeat (a step waits for the last process to have the sum); the
// median over the repeats unless named otherwise.
struct AllreduceTimes {
  bool reports = false;   // this process is rank 0 (or alone), which prints the result
  int processes = 1;
  int64_t elements = 0;
  double exact = 0;       // the exact sum's exchange: exponent MPI_MAX + int64 MPI_SUM
  double exact_min = 0;   // the fastest repeat of it
  double convert = 0;     // fixed-point conversion there and back
  double float_sum = 0;   // a float MPI_SUM of as many elements, for comparison
  std::string algorithm;  // the allreduce algorithm that ran (cluster/allreduce_algorithm.hpp)
};

// Times an allreduce of `elements` int64 (the exact sum of a model's gradients) and of as many floats over
// every process (`stride bench --comm`).
AllreduceTimes bench_allreduce(Session& session, int64_t elements, int repeats);

}  // namespace stride::cluster
