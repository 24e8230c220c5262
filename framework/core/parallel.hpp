#pragma once
// The one wrapper around the TBB scheduler. Kernels call these helpers and never touch TBB directly.
//
// Determinism rule: a parallel loop only partitions work; it never decides how floating-point values are
// combined. Each output element is written by exactly one task, and where partial sums cannot be avoided
// they are computed over fixed blocks (parallel_chunks) and added in index order afterwards, so results are
// bit-identical for any thread count.
#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace stride {

// A non-owning reference to a callable, for loop bodies: unlike std::function it never allocates, whatever
// a lambda captures, so a training step that runs hundreds of parallel loops allocates nothing. The callable
// must outlive the call it is passed to (a lambda argument always does).
template <class Signature>
class FunctionRef;
template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit, so lambdas convert at the call
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, Args... args) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...); }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

// Runs body(begin, end) over [0, n) in blocks of about `grain` indices, in parallel. Block boundaries are
// not specified: the body must write disjoint outputs for disjoint index ranges.
void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> body);

// Runs body(chunk, begin, end) for every fixed chunk [chunk*size, min(n, (chunk+1)*size)) in parallel.
// Chunk boundaries depend only on n and size, never on the number of threads.
void parallel_chunks(int64_t n, int64_t size, FunctionRef<void(int64_t, int64_t, int64_t)> body);

inline int64_t chunk_count(int64_t n, int64_t size) { return (n + size - 1) / size; }

// Whether `copy` holds the n floats at src bit for bit; if not, it takes them. For the copy a layer keeps of
// the weight its bf16 packs were made from: compared before every micro-batch, changed once per optimizer
// step. Both passes run over fixed blocks on the threads (done serially, lenet5's ip1 made them the largest
// serial stretch of its bf16 step in the many-core projection).
bool same_or_copy(std::vector<float>& copy, const float* src, size_t n);

// Index of the calling thread in the current pool, in [0, worker_slots()). Lets a kernel keep one scratch
// buffer per thread. Valid only in bodies that do not start nested parallel loops (a thread waiting on a
// nested loop may run another task of the outer loop with the same slot).
int worker_slot();
int worker_slots();

// Threads the scheduler may use now (the cap set by ThreadLimit, or the hardware count).
int max_threads();

// Runs `fn` on exactly `threads` threads, even more than the machine has cores: a task arena of that size,
// with the global cap raised to match (tbb::global_control alone only caps). Tests use it to show that
// results do not depend on the thread count.
void run_with_threads(int threads, const std::function<void()>& fn);

// Caps the number of threads for its lifetime (`--threads N`). Create one, early, in `main` or a test.
class ThreadLimit {
 public:
  explicit ThreadLimit(int threads);
  ~ThreadLimit();
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stride
