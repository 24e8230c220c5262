// A training step allocates nothing once it has run: every buffer is a member sized by the first step of a
// shape (Tensor::resize keeps its capacity), parallel loops take a non-owning FunctionRef, and the kernels
// pack into per-thread buffers that only grow. This binary counts every allocation: operator new, and
// malloc and its relatives (interposed over glibc's, which they forward to; in a sanitizer build, through the
// sanitizer's allocator hooks).
// Only the thread that runs the steps counts (it takes part in every parallel loop, so a loop or kernel that
// allocates shows there): TBB worker threads allocate their own bookkeeping the first time they join an
// arena, which on a loaded machine may be any step.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "framework/core/parallel.hpp"
#include "framework/gradient_reducer.hpp"
#include "framework/model_spec.hpp"
#include "framework/optimizer.hpp"
#include "framework/run_setup.hpp"
#include "framework/training_step.hpp"
#include "tests/random_batch.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
thread_local bool t_counted_thread = false;
void note() {
  if (t_counted_thread && g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// Sanitizer builds bring their own allocator, which must not be interposed; they call hooks instead.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STRIDE_SANITIZED_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRIDE_SANITIZED_ALLOCATOR 1
#endif

#ifdef STRIDE_SANITIZED_ALLOCATOR
#include <sanitizer/allocator_interface.h>
namespace {
void on_malloc(const volatile void*, size_t) { note(); }
void on_free(const volatile void*) {}
[[maybe_unused]] const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* malloc(size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  note();
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* memalign(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  note();
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;  // ENOMEM
}
}
#endif

using namespace stride;

namespace {

// Allocations made by `steps` training steps of `model` after `warmup` steps of the same shapes.
long allocations_per_steps(const std::string& model, int64_t batch, int64_t micro_batch, int warmup, int steps) {
  Network net = build_network(*zoo_spec(model));
  net.init(1);
  const test::RandomBatch data = test::random_batch(net, batch, 2);
  const Tensor& x = data.x;
  const std::vector<int32_t>& labels = data.labels;
  OptimizerOptions o;
  o.momentum = 0.9;
  auto opt = make_optimizer(o, net);
  LocalGradientReducer reducer;
  TrainingStep step(net, *opt, reducer, batch, resolve_micro_batch(batch, micro_batch, 1));
  int s = 0;
  for (; s < warmup; ++s) step.run(x, labels, batch, RunContext{Mode::train, 1, 0, s * batch}, 0.01);
  g_allocations = 0;
  t_counted_thread = true;
  g_counting = true;
  for (; s < warmup + steps; ++s) step.run(x, labels, batch, RunContext{Mode::train, 1, 0, s * batch}, 0.01);
  g_counting = false;
  t_counted_thread = false;
  return g_allocations.load();
}

}  // namespace

TEST_CASE("the allocation counter sees operator new and malloc") {
  g_allocations = 0;
  t_counted_thread = true;
  g_counting = true;
  // volatile: the compiler may otherwise drop an allocation whose result is never used (clang does).
  int* volatile p = new int(3);
  void* volatile q = std::malloc(16);
  g_counting = false;
  t_counted_thread = false;
  delete p;
  std::free(q);
  CHECK(g_allocations.load() == 2);
}

TEST_CASE("training steps of cifar10_quick, lenet5 and resnet8 allocate nothing after the first") {
  for (const char* model : {"cifar10_quick", "lenet5", "resnet8"}) {
    CAPTURE(model);
    run_with_threads(2, [&] {
      CHECK(allocations_per_steps(model, 16, 0, 2, 3) == 0);
      CHECK(allocations_per_steps(model, 16, 8, 2, 3) == 0);
    });
  }
}
