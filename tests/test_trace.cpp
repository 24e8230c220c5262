// `stride bench --trace` (framework/core/trace.hpp): the file is well-formed and covers every layer and phase
// of a step, and recording changes neither the results nor the chunks a loop is split into; at two threads
// it holds the scopes only.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/trace.hpp"
#include "framework/model_spec.hpp"
#include "framework/run_setup.hpp"
#include "framework/training_step.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
using json = nlohmann::json;

namespace {

// The parameters after two steps of lenet5 on a fixed batch of 8 in micro-batches of 4, traced or not.
std::vector<float> two_steps(bool traced, std::vector<trace::StepTrace>* steps = nullptr) {
  Network net = build_network(*zoo_spec("lenet5"), std::nullopt);
  net.init(11);
  OptimizerOptions o;
  o.momentum = 0.9;
  auto opt = make_optimizer(o, net);
  LocalGradientReducer local;
  TrainingStep step(net, *opt, local, 8, 4);
  Tensor x(Shape{8, 1, 28, 28});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.01f * static_cast<float>(i));
  const std::vector<int32_t> labels{0, 1, 2, 3, 4, 5, 6, 7};
  std::optional<trace::Recorder> rec;
  if (traced) rec.emplace();
  for (int s = 0; s < 2; ++s) {
    if (rec) rec->begin_step();
    step.run(x, labels, 8, RunContext{Mode::train, 1, 0, 8 * s}, 0.05);
    if (rec) rec->end_step();
  }
  if (rec && steps) *steps = rec->steps();
  return {net.params().begin(), net.params().end()};
}

}  // namespace

TEST_CASE("recording a trace changes no result, and records each fixed chunk as the scheduler runs it") {
  std::vector<float> plain, traced, two_threads;
  std::vector<trace::StepTrace> steps;
  run_with_threads(1, [&] {
    plain = two_steps(false);
    traced = two_steps(true, &steps);
  });
  run_with_threads(2, [&] { two_threads = two_steps(false); });
  REQUIRE(plain.size() == traced.size());
  CHECK(std::memcmp(plain.data(), traced.data(), plain.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(plain.data(), two_threads.data(), plain.size() * sizeof(float)) == 0);
  REQUIRE(steps.size() == 2);
  for (const trace::StepTrace& st : steps) {
    REQUIRE(!st.loops.empty());
    for (const trace::Loop& l : st.loops) {
      // One thread: parallel_for makes one call over [0, n); parallel_chunks one call per fixed chunk, in order.
      const int64_t calls = l.kind == trace::LoopKind::chunks ? chunk_count(l.n, l.grain) : 1;
      REQUIRE(static_cast<int64_t>(l.tasks.size()) == calls);
      for (int64_t c = 0; c < calls; ++c) {
        const trace::Task& t = l.tasks[static_cast<size_t>(c)];
        CHECK(t.chunk == c);
        CHECK(t.begin == (l.kind == trace::LoopKind::chunks ? c * l.grain : 0));
        CHECK(t.end == (l.kind == trace::LoopKind::chunks ? std::min(l.n, (c + 1) * l.grain) : l.n));
      }
    }
  }
  CHECK(trace::active() == nullptr);
}

TEST_CASE("at two threads a trace records the scopes and no loops, and changes no result") {
  std::vector<float> plain, traced;
  std::vector<trace::StepTrace> steps;
  run_with_threads(2, [&] {
    plain = two_steps(false);
    traced = two_steps(true, &steps);
  });
  REQUIRE(plain.size() == traced.size());
  CHECK(std::memcmp(plain.data(), traced.data(), plain.size() * sizeof(float)) == 0);
  REQUIRE(steps.size() == 2);
  for (const trace::StepTrace& st : steps) {
    CHECK(st.loops.empty());  // their bodies ran on both threads
    std::set<std::pair<std::string, std::string>> seen;
    for (const trace::Scope& s : st.scopes) {
      CHECK(s.start_us <= s.end_us);
      CHECK(s.end_us <= st.duration_us);
      seen.insert({s.layer, s.phase});
    }
    for (const char* layer : {"conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"})
      for (const char* phase : {"forward", "backward"}) {
        CAPTURE(layer);
        CAPTURE(phase);
        CHECK(seen.count({layer, phase}) == 1);
      }
    CHECK(seen.count({"step", "optimizer"}) == 1);
  }
  // One recorder at a time.
  run_with_threads(2, [] {
    trace::Recorder one;
    CHECK_THROWS_AS(trace::Recorder(), stride::Error);
  });
  CHECK(trace::active() == nullptr);
}

TEST_CASE("stride bench --trace writes every loop, layer and phase of each step") {
  test::TempDir dir("trace");
  const std::string path = dir / "t.json";
  const auto r = test::run_stride("bench --model lenet5 --batch 32 --micro-batch 16 --steps 2 --warmup 1 --trace " +
                                  path);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream in(path);
  REQUIRE(in.good());
  const json t = json::parse(in);
  CHECK(t["format"] == "stride-trace");
  CHECK(t["version"] == 1);
  CHECK(t["threads"] == 1);
  CHECK(t["model"] == "lenet5");
  CHECK(t["batch"] == 32);
  CHECK(t["micro_batches"] == 2);
  CHECK(t["learnable"] == 431080);
  const auto layers = t["layer_names"].get<std::vector<std::string>>();
  REQUIRE(layers.size() == 7);  // conv1 pool1 conv2 pool2 ip1 relu1 ip2
  REQUIRE(t["steps"].size() == 2);
  for (const json& st : t["steps"]) {
    const double duration = st["duration_us"];
    CHECK(duration > 0);
    const json& scopes = st["scopes"];
    // (layer, phase) -> micro-batches seen
    std::map<std::pair<std::string, std::string>, std::set<int64_t>> seen;
    for (const json& s : scopes) {
      const double a = s["start_us"], b = s["end_us"];
      CHECK(0 <= a);
      CHECK(a <= b);
      CHECK(b <= duration);
      const int parent = s["parent"];
      REQUIRE(parent < static_cast<int>(scopes.size()));
      if (parent >= 0) {
        CHECK(static_cast<double>(scopes[static_cast<size_t>(parent)]["start_us"]) <= a);
        CHECK(b <= static_cast<double>(scopes[static_cast<size_t>(parent)]["end_us"]));
      }
      seen[{s["layer"].get<std::string>(), s["phase"].get<std::string>()}].insert(s["micro_batch"].get<int64_t>());
    }
    for (const std::string& name : layers)
      for (const char* phase : {"forward", "backward"}) {
        CAPTURE(name);
        CAPTURE(phase);
        CHECK(seen[{name, phase}] == std::set<int64_t>{0, 1});
      }
    for (const char* phase : {"input", "loss"}) {
      CAPTURE(phase);
      CHECK(seen[{"step", phase}] == std::set<int64_t>{0, 1});
    }
    CHECK(seen[{"step", "zero_grad"}] == std::set<int64_t>{0});  // micro-batch 1 starts from keep_and_clear's zeros
    CHECK(seen[{"step", "gradient_sum"}] == std::set<int64_t>{-1, 0});  // keep micro-batch 0; the final sum
    for (const char* phase : {"statistics", "finite_check", "optimizer"}) {
      CAPTURE(phase);
      CHECK(seen[{"step", phase}] == std::set<int64_t>{-1});
    }
    // Every loop belongs to a scope, lies inside it, and its calls tile [0, n) in order.
    std::set<std::pair<std::string, std::string>> with_loops;
    double last_end = 0;
    for (const json& l : st["loops"]) {
      const int scope = l["scope"];
      REQUIRE(scope >= 0);
      REQUIRE(scope < static_cast<int>(scopes.size()));
      const json& s = scopes[static_cast<size_t>(scope)];
      with_loops.insert({s["layer"].get<std::string>(), s["phase"].get<std::string>()});
      const double a = l["start_us"], b = l["end_us"];
      CHECK(static_cast<double>(s["start_us"]) <= a);
      CHECK(b <= static_cast<double>(s["end_us"]));
      CHECK(last_end <= a);
      last_end = b;
      const int64_t n = l["n"], grain = l["grain"];
      CHECK(n > 0);
      CHECK(grain > 0);
      const bool chunks = l["kind"] == "chunks";
      CHECK((chunks || l["kind"] == "blocks"));
      const json& tasks = l["tasks"];
      REQUIRE(static_cast<int64_t>(tasks.size()) == (chunks ? chunk_count(n, grain) : 1));
      int64_t next = 0;
      double busy = 0;
      for (const json& task : tasks) {
        CHECK(task["begin"] == next);
        next = task["end"];
        const double ts = task["start_us"], td = task["duration_us"];
        CHECK(a <= ts);
        CHECK(ts + td <= b + 1e-3);
        busy += td;
      }
      CHECK(next == n);
      CHECK(busy <= b - a + 1e-3);
    }
    // The work of every layer's forward and backward runs in loops the projection can spread.
    for (const std::string& name : layers) {
      CAPTURE(name);
      CHECK(with_loops.count({name, "forward"}) == 1);
      CHECK(with_loops.count({name, "backward"}) == 1);
    }
    CHECK(with_loops.count({"step", "optimizer"}) == 1);
  }
  // At 2 threads: the scopes of every step, no loops.
  const auto two = test::run_stride("bench --model lenet5 --batch 32 --micro-batch 16 --steps 2 --warmup 1 "
                                    "--threads 2 --trace " + path);
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  std::ifstream in2(path);
  const json t2 = json::parse(in2);
  CHECK(t2["threads"] == 2);
  REQUIRE(t2["steps"].size() == 2);
  for (const json& st : t2["steps"]) {
    CHECK(st["loops"].empty());
    std::set<std::pair<std::string, std::string>> seen;
    for (const json& s : st["scopes"]) seen.insert({s["layer"].get<std::string>(), s["phase"].get<std::string>()});
    for (const std::string& name : layers) {
      CAPTURE(name);
      CHECK(seen.count({name, "forward"}) == 1);
      CHECK(seen.count({name, "backward"}) == 1);
    }
  }
}
