#include "framework/core/trace.hpp"

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"

namespace stride::trace {

namespace {
Recorder* active_recorder = nullptr;
}

Recorder* active() { return active_recorder; }

Recorder::Recorder() : records_loops_(max_threads() == 1), owner_(std::this_thread::get_id()) {
  if (active_recorder) throw Error("trace: another recorder is active");
  active_recorder = this;
}

Recorder::~Recorder() { active_recorder = nullptr; }

double Recorder::now_us() const { return std::chrono::duration<double, std::micro>(Clock::now() - step_start_).count(); }

void Recorder::begin_step() {
  if (!mine()) return;
  steps_.emplace_back();
  in_step_ = true;
  open_ = -1;
  loop_depth_ = 0;
  micro_batch_ = -1;
  step_start_ = Clock::now();
}

void Recorder::end_step() {
  if (!in_step_ || !mine()) return;
  steps_.back().duration_us = now_us();
  in_step_ = false;
}

int Recorder::begin_loop(LoopKind kind, int64_t n, int64_t grain) {
  if (!in_step_ || !records_loops() || !mine() || loop_depth_++ > 0) return -1;
  auto& loops = steps_.back().loops;
  Loop l;
  l.scope = open_;
  l.kind = kind;
  l.n = n;
  l.grain = grain;
  l.start_us = now_us();
  loops.push_back(std::move(l));
  return static_cast<int>(loops.size()) - 1;
}

void Recorder::end_loop(int loop) {
  if (!records_loops() || !mine()) return;
  if (loop_depth_ > 0) --loop_depth_;
  if (loop >= 0 && in_step_) steps_.back().loops[static_cast<size_t>(loop)].end_us = now_us();
}

void Recorder::task(int loop, int64_t chunk, int64_t begin, int64_t end, double start_us, double duration_us) {
  if (loop < 0 || !in_step_ || !mine()) return;
  steps_.back().loops[static_cast<size_t>(loop)].tasks.push_back({chunk, begin, end, start_us, duration_us});
}

int Recorder::open_scope(std::string_view layer, std::string_view phase) {
  if (!in_step_ || loop_depth_ > 0 || !mine()) return -1;
  auto& scopes = steps_.back().scopes;
  Scope s;
  s.layer = std::string(layer);
  s.phase = std::string(phase);
  s.parent = open_;
  s.micro_batch = micro_batch_;
  s.start_us = now_us();
  scopes.push_back(std::move(s));
  open_ = static_cast<int>(scopes.size()) - 1;
  return open_;
}

void Recorder::close_scope(int scope) {
  if (scope < 0 || !in_step_ || !mine()) return;
  Scope& s = steps_.back().scopes[static_cast<size_t>(scope)];
  s.end_us = now_us();
  open_ = s.parent;
}

}  // namespace stride::trace
