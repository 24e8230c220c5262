#include "framework/core/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "framework/core/errors.hpp"
#include "framework/core/trace.hpp"

// ThreadSanitizer sees only instrumented code, and Debian's libtbb is not built with it: TBB's hand-off of its
// own task objects between threads looks like a race in every kernel. The TSan build (scripts/sanitizers.sh)
// therefore runs the same loops on std::threads that it creates and joins itself, so TSan sees every
// happens-before edge and reports only races in stride's code. Blocks, chunks, thread counts (ThreadLimit,
// task_arena size) and worker slots keep their contracts.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRIDE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define STRIDE_TSAN 1
#endif
#ifdef STRIDE_TSAN
#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>
#endif

namespace stride {

#ifdef STRIDE_TSAN
namespace {
thread_local int tsan_slot = -1;

int tsan_threads() {
  return std::max(1, std::min(max_threads(), tbb::this_task_arena::max_concurrency()));
}

// task(i) for every i in [0, tasks), on up to tsan_threads() threads: the caller's and new ones. Thread t
// runs tasks t, t + threads, ...: a fixed share, so every thread really runs some bodies and TSan sees them
// overlap (a shared counter let the caller finish small loops before the others started).
void run_tasks(int64_t tasks, const std::function<void(int64_t)>& task) {
  const auto threads = static_cast<int>(std::min<int64_t>(tasks, tsan_threads()));
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](int slot) {
    const int previous = tsan_slot;
    tsan_slot = slot;
    try {
      for (int64_t i = slot; i < tasks; i += threads) task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
    tsan_slot = previous;
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}
}  // namespace
#endif

// The one-thread paths below, timed for a trace recorder (framework/core/trace.hpp): the same body calls over
// the same ranges, in the same order, each reported with its start and duration.
namespace {
void traced_for(trace::Recorder& r, int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body) {
  const int loop = r.begin_loop(trace::LoopKind::blocks, n, grain);
  const double t0 = r.now_us();
  body(0, n);
  r.task(loop, 0, 0, n, t0, r.now_us() - t0);
  r.end_loop(loop);
}

void traced_chunks(trace::Recorder& r, int64_t n, int64_t size, FunctionRef<void(int64_t, int64_t, int64_t)> body) {
  const int loop = r.begin_loop(trace::LoopKind::chunks, n, size);
  for (int64_t c = 0; c < chunk_count(n, size); ++c) {
    const double t0 = r.now_us();
    body(c, c * size, std::min(n, (c + 1) * size));
    r.task(loop, c, c * size, std::min(n, (c + 1) * size), t0, r.now_us() - t0);
  }
  r.end_loop(loop);
}
}  // namespace

void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (trace::Recorder* r = trace::active(); r && r->records_loops() && max_threads() == 1)
    return traced_for(*r, n, grain, body);
  if (n <= grain || max_threads() == 1) {
    body(0, n);
    return;
  }
#ifdef STRIDE_TSAN
  const int64_t block = std::max(grain, (n + 4 * tsan_threads() - 1) / (4 * tsan_threads()));
  run_tasks((n + block - 1) / block, [&](int64_t b) { body(b * block, std::min(n, (b + 1) * block)); });
#else
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, static_cast<size_t>(grain)),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
#endif
}

void parallel_chunks(int64_t n, int64_t size, FunctionRef<void(int64_t, int64_t, int64_t)> body) {
  if (n <= 0) return;
  if (size < 1) size = 1;
  if (trace::Recorder* r = trace::active(); r && r->records_loops() && max_threads() == 1)
    return traced_chunks(*r, n, size, body);
  const int64_t chunks = chunk_count(n, size);
  auto run = [&](int64_t c) { body(c, c * size, std::min(n, (c + 1) * size)); };
  if (chunks == 1 || max_threads() == 1) {
    for (int64_t c = 0; c < chunks; ++c) run(c);
    return;
  }
#ifdef STRIDE_TSAN
  run_tasks(chunks, run);
#else
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, chunks, 1), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t c = r.begin(); c < r.end(); ++c) run(c);
  });
#endif
}

bool same_or_copy(std::vector<float>& copy, const float* src, size_t n) {
  constexpr int64_t kBlock = 16384;  // floats per task
  const auto count = static_cast<int64_t>(n);
  const int64_t blocks = chunk_count(count, kBlock);
  if (copy.size() == n) {
    std::atomic<bool> differ{false};
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1 && !differ.load(std::memory_order_relaxed); ++b) {
        const int64_t i = b * kBlock, len = std::min(kBlock, count - i);
        if (std::memcmp(copy.data() + i, src + i, static_cast<size_t>(len) * sizeof(float)) != 0)
          differ.store(true, std::memory_order_relaxed);
      }
    });
    if (!differ.load()) return true;
  }
  copy.resize(n);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    const int64_t i = b0 * kBlock, end = std::min(b1 * kBlock, count);
    std::memcpy(copy.data() + i, src + i, static_cast<size_t>(end - i) * sizeof(float));
  });
  return false;
}

int worker_slot() {
#ifdef STRIDE_TSAN
  if (tsan_slot >= 0) return tsan_slot;
#endif
  int slot = tbb::this_task_arena::current_thread_index();
  return slot < 0 ? 0 : slot;
}

int worker_slots() { return tbb::this_task_arena::max_concurrency(); }

int max_threads() {
  const auto cap = static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
  return std::min(cap, tbb::this_task_arena::max_concurrency());
}

void run_with_threads(int threads, const std::function<void()>& fn) {
  if (threads < 1) throw ConfigError("threads: expected a count >= 1, got " + std::to_string(threads));
  tbb::global_control cap(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
  tbb::task_arena arena(threads);
  arena.execute(fn);
}

struct ThreadLimit::Impl {
  tbb::global_control control;
  explicit Impl(int n) : control(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(n)) {}
};

ThreadLimit::ThreadLimit(int threads) {
  if (threads < 1) throw ConfigError("threads: expected a count >= 1, got " + std::to_string(threads));
  impl_ = std::make_unique<Impl>(threads);
}

ThreadLimit::~ThreadLimit() = default;

}  // namespace stride
