#pragma once
// A record of every parallel loop of a training step, and of the serial work between them, for
// `stride bench --trace`, scripts/manycore_projection.py and scripts/thread_scaling.py (docs/performance.md,
// "Many-core projection" and "Thread scaling per scope").
//
// At one thread the recorder takes everything: every loop body then runs on the recording thread, in index
// order, so a plain vector needs no lock and the times of a chunk are its own. parallel_for and
// parallel_chunks (framework/core/parallel.cpp) report each loop and each body call here; scopes (a layer's
// forward, the loss, the optimizer, ...) say whose the loops and the serial time between them are. Recording
// changes nothing a loop computes or how it is split: at one thread parallel_for already makes one body call
// over [0, n), and parallel_chunks one call per fixed chunk.
// At more threads it takes the scopes only, as wall time on the recording thread (the one that constructed
// it, which opens every scope: they lie between the loops, never inside a body); loop bodies run on several
// threads and are not recorded. Compared with a one-thread trace, that shows which scopes scale and which do
// not. When no recorder is active (every run but `bench --trace`), a loop or a scope costs one load of a
// pointer and a branch.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace stride::trace {

// One body call of a loop: [begin, end) of the loop's index range; for parallel_chunks, its fixed chunk.
struct Task {
  int64_t chunk = 0;  // chunk index (parallel_chunks), or the call's number within the loop (parallel_for)
  int64_t begin = 0, end = 0;
  double start_us = 0, duration_us = 0;  // from the start of the step
};

enum class LoopKind {
  blocks,  // parallel_for: TBB may split [0, n) anywhere into blocks of at least about `grain` indices
  chunks,  // parallel_chunks: exactly ceil(n / grain) chunks of `grain` indices, whatever the thread count
};

struct Loop {
  int scope = -1;  // the innermost open scope when the loop started (index into StepTrace::scopes), or -1
  LoopKind kind = LoopKind::blocks;
  int64_t n = 0, grain = 0;
  double start_us = 0, end_us = 0;
  std::vector<Task> tasks;
};

// A named stretch of the step: `layer` (a layer's name, or "step" for the step's own work) and `phase`
// (forward, backward, loss, optimizer, ...). Scopes nest; time in a scope outside any loop is serial.
struct Scope {
  std::string layer, phase;
  int parent = -1;
  int64_t micro_batch = -1;  // the micro-batch the scope belongs to, or -1 for once-per-step work
  double start_us = 0, end_us = 0;
};

struct StepTrace {
  double duration_us = 0;
  std::vector<Scope> scopes;
  std::vector<Loop> loops;
};

// Collects steps between begin_step and end_step. Only one recorder is active at a time.
class Recorder {
 public:
  // Records loops and tasks when the scheduler runs one thread (max_threads() == 1), else scopes only.
  Recorder();
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  void begin_step();
  void end_step();
  const std::vector<StepTrace>& steps() const { return steps_; }
  bool records_loops() const { return records_loops_; }  // the scheduler ran one thread when recording began

  // Called by parallel.cpp, the scopes and TrainingStep; ignored outside a step and on other threads.
  int begin_loop(LoopKind kind, int64_t n, int64_t grain);  // returns a loop id, or -1 (nested or no step)
  void end_loop(int loop);
  void task(int loop, int64_t chunk, int64_t begin, int64_t end, double start_us, double duration_us);
  int open_scope(std::string_view layer, std::string_view phase);
  void close_scope(int scope);
  void set_micro_batch(int64_t k) {
    if (mine()) micro_batch_ = k;
  }
  double now_us() const;

 private:
  using Clock = std::chrono::steady_clock;
  bool mine() const { return std::this_thread::get_id() == owner_; }

  std::vector<StepTrace> steps_;
  bool records_loops_ = true;
  std::thread::id owner_;
  bool in_step_ = false;
  int open_ = -1;         // innermost open scope of the current step
  int loop_depth_ = 0;    // loops started inside a loop body are part of that body's time
  int64_t micro_batch_ = -1;
  Clock::time_point step_start_{};
};

// The active recorder, or null.
Recorder* active();

// Marks a stretch of the step as `layer`'s `phase` while it lives. Nothing is copied unless a recorder is
// active, so the names may be temporaries.
class ScopeGuard {
 public:
  ScopeGuard(std::string_view layer, std::string_view phase) {
    if (Recorder* r = active()) {
      recorder_ = r;
      scope_ = r->open_scope(layer, phase);
    }
  }
  ~ScopeGuard() {
    if (recorder_) recorder_->close_scope(scope_);
  }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  Recorder* recorder_ = nullptr;
  int scope_ = -1;
};

// Tags what follows with micro-batch k (-1: once-per-step work again).
inline void set_micro_batch(int64_t k) {
  if (Recorder* r = active()) r->set_micro_batch(k);
}

}  // namespace stride::trace
