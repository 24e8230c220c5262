#include "framework/core/parallel.hpp"

#include <algorithm>

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "framework/core/errors.hpp"

namespace stride {

void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain || max_threads() == 1) {
    body(0, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, static_cast<size_t>(grain)),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
}

void parallel_chunks(int64_t n, int64_t size, FunctionRef<void(int64_t, int64_t, int64_t)> body) {
  if (n <= 0) return;
  if (size < 1) size = 1;
  const int64_t chunks = chunk_count(n, size);
  auto run = [&](int64_t c) { body(c, c * size, std::min(n, (c + 1) * size)); };
  if (chunks == 1 || max_threads() == 1) {
    for (int64_t c = 0; c < chunks; ++c) run(c);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, chunks, 1), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t c = r.begin(); c < r.end(); ++c) run(c);
  });
}

int worker_slot() {
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
