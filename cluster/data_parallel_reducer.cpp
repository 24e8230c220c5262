// The data-parallel GradientReducer (cluster/session.hpp, docs/cluster.md).
//
// Per step, per bucket of the exact sum (framework/exact_sum.hpp), in bucket order:
//   1. exponents: MPI_Iallreduce(MPI_INT, MPI_MAX) of each segment's largest exponent   (communicator maxes_)
//   2. fixed point: this process's micro-batch gradients at the agreed exponents, summed exactly
//   3. MPI_Iallreduce(MPI_INT64_T, MPI_SUM) in place                                      (communicator sums_)
//   4. back to float into the gradient buffer
// A bucket starts as soon as the backward of this process's last micro-batch has finished it. Collectives on
// one communicator must be started in the same order by every process, so the exponent exchanges and the
// sums each get their own communicator, and each is started strictly in bucket order; rows, stop agreement,
// broadcast and checksums use a third, from the training thread only. OpenMPI runs them all as a ring
// (cluster/allreduce_algorithm.hpp: its own choice for in-place sums, a binomial tree, took 2-3x as long).
//
// Progress (OpenMPI moves a non-blocking collective only while some thread is inside MPI):
//   test    the training thread calls MPI_Test between layers (poll()) and waits in reduce();
//   thread  a communication thread runs the steps above and polls with a short back-off;
//   none    nothing starts before reduce() (no overlap: the baseline for measuring it).
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cluster/allreduce_algorithm.hpp"
#include "cluster/mpi_wait.hpp"
#include "cluster/session.hpp"
#include "framework/core/errors.hpp"

namespace stride::cluster {

namespace {

using detail::check;
using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// STRIDE_FAULT_RANK=r STRIDE_FAULT_STEP=s [STRIDE_FAULT_MODE=throw|hang|kill]: rank r fails as step s begins.
struct FaultSwitch {
  int rank = -1;
  int64_t step = -1;
  std::string mode = "throw";

  static FaultSwitch from_environment() {
    FaultSwitch f;
    const char* r = std::getenv("STRIDE_FAULT_RANK");
    const char* s = std::getenv("STRIDE_FAULT_STEP");
    const char* m = std::getenv("STRIDE_FAULT_MODE");
    if (!r || !s) return f;
    f.rank = std::atoi(r);
    f.step = std::atoll(s);
    if (m && *m) f.mode = m;
    if (f.mode != "throw" && f.mode != "hang" && f.mode != "kill")
      throw ConfigError("STRIDE_FAULT_MODE: expected throw, hang or kill, got \"" + f.mode + "\"");
    return f;
  }
};

class DataParallelReducer final : public GradientReducer {
 public:
  DataParallelReducer(Session& session, const ReducerOptions& options);
  ~DataParallelReducer() override;

  int64_t processes() const override { return size_; }
  MicroBatchRange share(int64_t items) const override { return contiguous_share(items, size_, rank_); }
  void begin_step(int64_t step) override;
  void begin_sum(ExactSum& sum, std::span<float> grads) override;
  void ready(int64_t from) override;
  void poll() override;
  void reduce() override;
  void gather(std::span<const double> mine, std::span<double> all, int64_t width, int64_t items) override;
  bool any(bool mine) override;
  void broadcast(std::span<float> values) override;
  void check_same(uint64_t checksum, const std::string& what) override;
  std::string summary() const override;
  bool writes_output() const override { return rank_ == 0; }

 private:
  struct Bucket {
    std::vector<int32_t> mine, agreed;  // exponents per segment
    std::vector<int64_t> fixed;         // this process's fixed-point sum, then (in place) everyone's
    MPI_Request max_req = MPI_REQUEST_NULL, sum_req = MPI_REQUEST_NULL;
  };
  // Test mode: starts what can start and completes what has completed, in bucket order.
  void advance(bool parallel);
  void start_max(size_t b, bool parallel);
  void start_sum(size_t b, bool parallel);
  void finish(size_t b, bool parallel);
  bool test(MPI_Request& req);
  void thread_main();

  const int rank_, size_;
  const CommProgress progress_;
  const FaultSwitch fault_;
  MPI_Comm maxes_ = MPI_COMM_NULL, sums_ = MPI_COMM_NULL, rows_ = MPI_COMM_NULL;
  int64_t step_ = 0;

  ExactSum* sum_ = nullptr;
  std::span<float> grads_;
  std::vector<Bucket> buckets_;
  size_t bucket_count_ = 0;
  std::atomic<size_t> ready_{0};  // buckets whose gradients are final
  size_t max_started_ = 0, sum_started_ = 0;
  std::atomic<size_t> done_{0};
  Clock::time_point first_start_, last_done_;

  // The communication thread (progress thread).
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
  bool step_open_ = false;  // a step's buckets are being exchanged
  std::exception_ptr thread_error_;

  // Measurements for summary().
  int64_t steps_measured_ = 0;
  double in_flight_ = 0, exposed_ = 0, rows_seconds_ = 0;
};

DataParallelReducer::DataParallelReducer(Session& session, const ReducerOptions& options)
    : rank_(session.rank()),
      size_(session.size()),
      progress_(options.progress),
      fault_(FaultSwitch::from_environment()) {
  if (!session.active()) throw Error("cluster: the data-parallel reducer needs an MPI session");
  if (progress_ == CommProgress::thread && !session.thread_multiple())
    throw ConfigError("--comm-progress thread: this MPI does not provide MPI_THREAD_MULTIPLE; use --comm-progress test");
  detail::use_ring_allreduce();  // before the first allreduce, the same on every process
  check(MPI_Comm_dup(MPI_COMM_WORLD, &maxes_), "MPI_Comm_dup");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &sums_), "MPI_Comm_dup");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &rows_), "MPI_Comm_dup");
  if (progress_ == CommProgress::thread) thread_ = std::thread([this] { thread_main(); });
}

DataParallelReducer::~DataParallelReducer() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  // A run that failed may leave requests behind; the job ends anyway (Session::fail), so only free the
  // communicators of a clean finish.
  if (!std::uncaught_exceptions() && done_ == bucket_count_) {
    MPI_Comm_free(&maxes_);
    MPI_Comm_free(&sums_);
    MPI_Comm_free(&rows_);
  }
}

void DataParallelReducer::begin_step(int64_t step) {
  step_ = step;
  if (fault_.rank != rank_ || fault_.step != step) return;
  const std::string what = "fault injected at step " + std::to_string(step) + " (STRIDE_FAULT_RANK=" +
                           std::to_string(fault_.rank) + " STRIDE_FAULT_STEP=" + std::to_string(fault_.step) + ")";
  if (fault_.mode == "kill") {
    std::fprintf(stderr, "rank %d: %s: killing this process (SIGKILL)\n", rank_, what.c_str());
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
  if (fault_.mode == "hang") {
    std::fprintf(stderr, "rank %d: %s: hanging\n", rank_, what.c_str());
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(60));
  }
  throw Error(what);
}

bool DataParallelReducer::test(MPI_Request& req) {
  int flag = 0;
  check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
  return flag != 0;
}

void DataParallelReducer::begin_sum(ExactSum& sum, std::span<float> grads) {
  bucket_count_ = sum.buckets().size();
  if (buckets_.size() != bucket_count_) {
    buckets_.assign(bucket_count_, Bucket{});
    for (size_t b = 0; b < bucket_count_; ++b) {
      const SumBucket& sb = sum.buckets()[b];
      buckets_[b].mine.resize(sb.segments.size());
      buckets_[b].agreed.resize(sb.segments.size());
      buckets_[b].fixed.resize(static_cast<size_t>(sb.size()));
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  sum_ = &sum;
  grads_ = grads;
  ready_ = 0;
  max_started_ = sum_started_ = 0;
  done_ = 0;
  step_open_ = true;
}

void DataParallelReducer::ready(int64_t from) {
  if (progress_ == CommProgress::none) return;
  size_t r = ready_.load();
  const size_t before = r;
  while (r < bucket_count_ && sum_->buckets()[r].begin >= from) ++r;
  if (r == before) return;
  if (progress_ == CommProgress::thread) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_ = r;
    }
    wake_.notify_all();
  } else {
    ready_ = r;
  }
}

void DataParallelReducer::poll() {
  if (progress_ == CommProgress::test) advance(/*parallel=*/true);
}

void DataParallelReducer::start_max(size_t b, bool parallel) {
  Bucket& k = buckets_[b];
  if (b == 0) first_start_ = Clock::now();
  sum_->exponents(b, k.mine.data(), parallel);
  check(MPI_Iallreduce(k.mine.data(), k.agreed.data(), static_cast<int>(k.mine.size()), MPI_INT, MPI_MAX, maxes_,
                       &k.max_req),
        "MPI_Iallreduce (exponents)");
}

void DataParallelReducer::start_sum(size_t b, bool parallel) {
  Bucket& k = buckets_[b];
  sum_->to_fixed(b, k.agreed.data(), k.fixed.data(), parallel);
  check(MPI_Iallreduce(MPI_IN_PLACE, k.fixed.data(), static_cast<int>(k.fixed.size()), MPI_INT64_T, MPI_SUM, sums_,
                       &k.sum_req),
        "MPI_Iallreduce (gradients)");
}

void DataParallelReducer::finish(size_t b, bool parallel) {
  Bucket& k = buckets_[b];
  sum_->from_fixed(b, k.agreed.data(), k.fixed.data(), grads_, parallel);
  if (b + 1 == bucket_count_) last_done_ = Clock::now();
}

void DataParallelReducer::advance(bool parallel) {
  const size_t ready = ready_.load();
  while (max_started_ < ready) start_max(max_started_++, parallel);
  while (sum_started_ < max_started_ && test(buckets_[sum_started_].max_req)) {
    start_sum(sum_started_, parallel);
    ++sum_started_;
  }
  size_t done = done_.load();
  while (done < sum_started_ && test(buckets_[done].sum_req)) finish(done++, parallel);
  done_ = done;
}

void DataParallelReducer::thread_main() {
  try {
    for (;;) {
      size_t b;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (step_open_ && max_started_ < ready_.load()); });
        if (stop_) return;
        b = max_started_++;
      }
      // Sleeps between tests from the start: this thread shares the cores with backward.
      detail::Backoff backoff(0.0);
      start_max(b, /*parallel=*/false);
      while (!test(buckets_[b].max_req)) {
        if (stop_) return;
        backoff.pause();
      }
      start_sum(b, /*parallel=*/false);
      ++sum_started_;
      backoff = detail::Backoff(0.0);
      while (!test(buckets_[b].sum_req)) {
        if (stop_) return;
        backoff.pause();
      }
      finish(b, /*parallel=*/false);
      ++done_;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    thread_error_ = std::current_exception();
    done_ = bucket_count_ + 1;  // wakes reduce(), which rethrows
  }
}

void DataParallelReducer::reduce() {
  const auto wait_start = Clock::now();
  detail::enter_collective("the gradient allreduce of step " + std::to_string(step_));
  if (progress_ != CommProgress::thread) {  // test, none: this thread drives what is left
    ready_ = bucket_count_;
    detail::wait_until([&] {
      advance(/*parallel=*/true);
      return done_.load() == bucket_count_;
    });
  } else {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_ = bucket_count_;
    }
    wake_.notify_all();
    detail::wait_until([&] { return done_.load() >= bucket_count_; });
    std::lock_guard<std::mutex> lock(mutex_);
    step_open_ = false;
    if (thread_error_) std::rethrow_exception(thread_error_);
  }
  const auto now = Clock::now();
  ++steps_measured_;
  exposed_ += seconds_between(wait_start, now);
  in_flight_ += seconds_between(first_start_, last_done_);
  sum_ = nullptr;
}

void DataParallelReducer::gather(std::span<const double> mine, std::span<double> all, int64_t width, int64_t items) {
  const auto t0 = Clock::now();
  std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    const MicroBatchRange s = contiguous_share(items, size_, r);
    counts[static_cast<size_t>(r)] = static_cast<int>(s.count * width);
    displs[static_cast<size_t>(r)] = static_cast<int>(s.first * width);
  }
  if (static_cast<int64_t>(mine.size()) != counts[static_cast<size_t>(rank_)] ||
      static_cast<int64_t>(all.size()) != items * width)
    throw Error("cluster: gather() rows of the wrong size");
  MPI_Request req;
  detail::enter_collective("the exchange of per-micro-batch values (losses, statistics, test counts) at step " +
                           std::to_string(step_));
  check(MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(), counts.data(),
                        displs.data(), MPI_DOUBLE, rows_, &req),
        "MPI_Iallgatherv");
  detail::wait(req);
  rows_seconds_ += seconds_between(t0, Clock::now());
}

bool DataParallelReducer::any(bool mine) {
  int in = mine ? 1 : 0, out = 0;
  MPI_Request req;
  detail::enter_collective("the stop agreement after step " + std::to_string(step_));
  check(MPI_Iallreduce(&in, &out, 1, MPI_INT, MPI_LOR, rows_, &req), "MPI_Iallreduce (stop)");
  detail::wait(req);
  return out != 0;
}

void DataParallelReducer::broadcast(std::span<float> values) {
  constexpr size_t kChunk = size_t{1} << 28;
  for (size_t first = 0; first < values.size(); first += kChunk) {
    const size_t n = std::min(kChunk, values.size() - first);
    MPI_Request req;
    detail::enter_collective("broadcasting the parameters from rank 0");
    check(MPI_Ibcast(values.data() + first, static_cast<int>(n), MPI_FLOAT, 0, rows_, &req), "MPI_Ibcast");
    detail::wait(req);
  }
}

void DataParallelReducer::check_same(uint64_t checksum, const std::string& what) {
  std::vector<uint64_t> all(static_cast<size_t>(size_));
  MPI_Request req;
  detail::enter_collective("comparing the checksums of the " + what);
  check(MPI_Iallgather(&checksum, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, rows_, &req), "MPI_Iallgather");
  detail::wait(req);
  std::string differ;
  for (int r = 1; r < size_; ++r)
    if (all[static_cast<size_t>(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    throw Error("the " + what + " of rank(s) " + differ + " differ from rank 0's after the start-of-run broadcast: "
                "do all processes read the same --data, --init and run directory (a shared file system)?");
}

std::string DataParallelReducer::summary() const {
  if (steps_measured_ == 0) return {};
  const double n = static_cast<double>(steps_measured_);
  const char* mode = progress_ == CommProgress::thread ? "thread" : progress_ == CommProgress::test ? "test" : "none";
  char text[256];
  std::snprintf(text, sizeof text,
                "stride: %d processes, %zu bucket%s per step, --comm-progress %s: allreduce %.2f ms/step from first "
                "start to last done, %.2f ms/step waited after backward; losses/statistics exchange %.2f ms/step",
                size_, bucket_count_, bucket_count_ == 1 ? "" : "s", mode, 1e3 * in_flight_ / n, 1e3 * exposed_ / n,
                1e3 * rows_seconds_ / n);
  return text;
}

}  // namespace

CommProgress parse_comm_progress(const std::string& name) {
  if (name == "test") return CommProgress::test;
  if (name == "thread") return CommProgress::thread;
  if (name == "none") return CommProgress::none;
  throw ConfigError("--comm-progress: expected thread, test or none, got \"" + name + "\"");
}

std::unique_ptr<GradientReducer> make_data_parallel_reducer(Session& session, const ReducerOptions& options) {
  return std::make_unique<DataParallelReducer>(session, options);
}

}  // namespace stride::cluster
