#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "cluster/session.hpp"
#include "framework/core/cpu.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"
#include "framework/core/trace.hpp"
#include "framework/gradient_reducer.hpp"
#include "framework/memory_plan.hpp"
#include "framework/model_spec.hpp"
#include "framework/optimizer.hpp"
#include "framework/run_setup.hpp"
#include "framework/train_config.hpp"
#include "framework/training_step.hpp"

namespace stride::app {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Training FLOPs of one sample, counting multiply-adds as 2: each layer's forward; the weight gradient of a
// layer with parameters (as many FLOPs as its forward); the input gradient of every layer whose input is not
// the network input (its first layer's is never computed).
struct LayerFlops {
  double forward = 0, data = 0, weights = 0;
};
LayerFlops layer_flops(Network& net, size_t i, const Shape& in) {
  Layer& layer = net.layer(i);
  LayerFlops f;
  f.forward = layer.forward_flops(in);
  const bool params = !layer.param_specs(in).empty();
  const auto& inputs = net.layer_inputs(i);
  const bool needs_dx = std::any_of(inputs.begin(), inputs.end(), [](int n) { return n >= 0; });
  if (params) f.weights = f.forward;
  if (needs_dx) f.data = f.forward;
  return f;
}

// Each layer alone, on the inputs it saw in a training forward of the whole network: forward, backward
// without the input gradient (weights only), backward with it. `steps` runs each, the fastest kept: on a
// shared machine other load only ever makes a run slower.
json per_layer(Network& net, const Tensor& x, int64_t steps, double peak_gflops, bool print, Precision precision) {
  RunContext base{Mode::train, 1, 0, 0};
  base.precision = precision;
  net.forward(x, base);
  json rows = json::array();
  if (print)
    std::printf("%-16s %-12s %9s %9s %9s %8s %8s %8s %6s %6s %6s\n", "layer", "type", "fwd ms", "bwd-d ms",
                "bwd-w ms", "fwd GF/s", "bwd-d", "bwd-w", "fwd %", "bwd-d%", "bwd-w%");
  for (size_t i = 0; i < net.layer_count(); ++i) {
    Layer& layer = net.layer(i);
    const auto& inputs = net.layer_inputs(i);
    const Tensor& a = inputs[0] < 0 ? x : net.layer_output(static_cast<size_t>(inputs[0]));
    const bool first = inputs[0] < 0;
    const Tensor& y0 = net.layer_output(i);
    Tensor y, dx, db;
    const Tensor dy(y0.shape(), 0.01f);
    std::vector<double> fwd, bwd_w, bwd_all;
    const RunContext ctx = base;
    auto* binary = dynamic_cast<BinaryLayer*>(&layer);
    for (int64_t s = 0; s < steps + 1; ++s) {  // the first round warms up
      auto t = Clock::now();
      if (binary)
        binary->forward2(a, net.layer_output(static_cast<size_t>(inputs[1])), y, ctx);
      else
        layer.forward(a, y, ctx);
      const double tf = seconds_since(t);
      double tw = 0, ta = 0;
      if (binary) {
        t = Clock::now();
        binary->backward2(dy, &dx, &db, ctx);
        ta = seconds_since(t);
      } else {
        t = Clock::now();
        layer.backward(a, y, dy, nullptr, ctx);
        tw = seconds_since(t);
        t = Clock::now();
        layer.backward(a, y, dy, &dx, ctx);
        ta = seconds_since(t);
      }
      if (s == 0) continue;
      fwd.push_back(tf);
      bwd_w.push_back(tw);
      bwd_all.push_back(ta);
    }
    const LayerFlops f = layer_flops(net, i, a.shape());
    const bool params = f.weights > 0;
    auto best = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
    const double t_fwd = best(fwd), t_w = params ? best(bwd_w) : 0.0;
    // Without parameters the weights-only backward does nothing: all of backward is the data gradient.
    const double t_d = first ? 0.0 : std::max(0.0, best(bwd_all) - t_w);
    auto rate = [](double flops, double t) { return t > 0 && flops > 0 ? flops / t * 1e-9 : 0.0; };
    const double g_fwd = rate(f.forward, t_fwd), g_d = rate(f.data, t_d), g_w = rate(f.weights, t_w);
    json row = {{"layer", layer.name()},
                {"type", std::string(layer.type())},
                {"forward_ms", 1e3 * t_fwd},
                {"backward_data_ms", 1e3 * t_d},
                {"backward_weights_ms", 1e3 * t_w},
                {"forward_gflops", g_fwd},
                {"backward_data_gflops", g_d},
                {"backward_weights_gflops", g_w},
                {"forward_peak_pct", 100 * g_fwd / peak_gflops},
                {"backward_data_peak_pct", 100 * g_d / peak_gflops},
                {"backward_weights_peak_pct", 100 * g_w / peak_gflops}};
    rows.push_back(row);
    if (print) {
      auto ms = [](double t, bool on) {
        char b[32];
        if (on)
          std::snprintf(b, sizeof b, "%9.3f", 1e3 * t);
        else
          std::snprintf(b, sizeof b, "%9s", "-");
        return std::string(b);
      };
      auto gf = [](double g) {
        char b[32];
        if (g > 0)
          std::snprintf(b, sizeof b, "%8.1f", g);
        else
          std::snprintf(b, sizeof b, "%8s", "-");
        return std::string(b);
      };
      auto pct = [&](double g) {
        char b[32];
        if (g > 0)
          std::snprintf(b, sizeof b, "%6.0f", 100 * g / peak_gflops);
        else
          std::snprintf(b, sizeof b, "%6s", "-");
        return std::string(b);
      };
      std::printf("%-16s %-12s %s %s %s %s %s %s %s %s %s\n", layer.name().c_str(), std::string(layer.type()).c_str(),
                  ms(t_fwd, true).c_str(), ms(t_d, !first).c_str(), ms(t_w, params).c_str(), gf(g_fwd).c_str(),
                  gf(g_d).c_str(), gf(g_w).c_str(), pct(g_fwd).c_str(), pct(g_d).c_str(), pct(g_w).c_str());
    }
  }
  return rows;
}

// `stride bench --comm`'s result: a few lines, or one JSON object (what scripts/network_model.py fits).
void print_allreduce(const cluster::AllreduceTimes& t, const std::string& label, const std::vector<std::string>& hosts,
                     bool as_json) {
  const double mb = static_cast<double>(t.elements) * 8 / 1e6;
  if (as_json) {
    const json out = {{"kind", "allreduce"},        {"label", label},
                      {"processes", t.processes},     {"elements", t.elements},
                      {"bytes", 8 * t.elements},      {"exact_ms", 1e3 * t.exact},
                      {"exact_min_ms", 1e3 * t.exact_min}, {"convert_ms", 1e3 * t.convert},
                      {"float_ms", 1e3 * t.float_sum}, {"algorithm", t.algorithm},
                      {"hosts", hosts}};
    std::cout << out.dump() << "\n";
    return;
  }
  std::printf("allreduce of %s: %lld elements, %d process%s%s%s (times of the slowest process)\n", label.c_str(),
              static_cast<long long>(t.elements), t.processes, t.processes == 1 ? "" : "es",
              t.algorithm.empty() ? "" : ", algorithm: ", t.algorithm.c_str());
  std::printf("  exact (exponent max + int64 sum, %.2f MB): %8.3f ms  (%.2f GB/s of int64 per process)\n", mb,
              1e3 * t.exact, mb / 1e3 / std::max(t.exact, 1e-12));
  std::printf("  fixed-point conversion there and back:    %8.3f ms\n", 1e3 * t.convert);
  std::printf("  float MPI_SUM for comparison (%.2f MB):    %8.3f ms  (not reproducible across process counts)\n",
              mb / 2, 1e3 * t.float_sum);
}

// `stride bench --trace`'s file (format in docs/performance.md, "Many-core projection"): the run, then each
// recorded step's scopes and loops (none at more than one thread), times in microseconds from the step's start.
void write_trace(const std::string& path, const json& run, const std::vector<trace::StepTrace>& steps) {
  json out = run;
  out["format"] = "stride-trace";
  out["version"] = 1;
  json js = json::array();
  for (const trace::StepTrace& st : steps) {
    json scopes = json::array(), loops = json::array();
    for (const trace::Scope& s : st.scopes)
      scopes.push_back({{"layer", s.layer}, {"phase", s.phase}, {"parent", s.parent}, {"micro_batch", s.micro_batch},
                        {"start_us", s.start_us}, {"end_us", s.end_us}});
    for (const trace::Loop& l : st.loops) {
      json tasks = json::array();
      for (const trace::Task& t : l.tasks)
        tasks.push_back({{"chunk", t.chunk}, {"begin", t.begin}, {"end", t.end}, {"start_us", t.start_us},
                         {"duration_us", t.duration_us}});
      loops.push_back({{"scope", l.scope},
                       {"kind", l.kind == trace::LoopKind::chunks ? "chunks" : "blocks"},
                       {"n", l.n},
                       {"grain", l.grain},
                       {"start_us", l.start_us},
                       {"end_us", l.end_us},
                       {"tasks", tasks}});
    }
    js.push_back({{"duration_us", st.duration_us}, {"scopes", scopes}, {"loops", loops}});
  }
  out["steps"] = js;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) throw IoError(path + ": cannot open for writing");
    f << out.dump() << "\n";
    f.flush();
    if (!f) throw IoError(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(path + ": cannot replace with " + tmp);
}

}  // namespace

// Times training steps (forward, loss, backward over micro-batches, SGD update: TrainingStep, exactly what
// `stride train` runs) on random data, so a layer or kernel change can be measured without a dataset.
int bench(int argc, char** argv) {
  std::string model = "cifar10_quick", input, isa, precision_text = "fp32", trace_path;
  int64_t batch = 64, steps = 20, warmup = 3;
  int64_t micro_batch = TrainConfig{}.micro_batch;
  int threads = 0;
  int64_t elements = 0;
  po::options_description opts("stride bench options");
  opts.add_options()
      ("model,m", po::value(&model)->default_value(model), "zoo name or spec file")
      ("input,i", po::value(&input), "input shape C,H,W when the spec has none")
      ("batch", po::value(&batch)->default_value(batch), "batch size")
      ("micro-batch", po::value(&micro_batch)->default_value(micro_batch),
       "samples per micro-batch, as stride train's --micro-batch (0 = 16 when it divides --batch, else the whole "
       "batch)")
      ("steps", po::value(&steps)->default_value(steps), "timed training steps")
      ("warmup", po::value(&warmup)->default_value(warmup), "untimed steps first")
      ("threads", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("isa", po::value(&isa), "kernel path: avx512bf16, avx512, avx2 or generic (default: STRIDE_ISA, else the best)")
      ("precision", po::value(&precision_text)->default_value(precision_text),
       "fp32, or bf16: convolutions and linear layers on bf16 inputs and weights with fp32 sums")
      ("per-layer", po::bool_switch(), "also time forward, backward-data and backward-weights of each layer")
      ("json", po::bool_switch(), "print one JSON object instead of text")
      ("trace", po::value(&trace_path), "record the timed steps into this JSON file: at 1 thread (the default "
       "with --trace) every parallel task, for scripts/manycore_projection.py; with --threads N > 1 the "
       "layers' and the step's scopes only, for scripts/thread_scaling.py")
      ("comm", po::bool_switch(), "instead: time the allreduce of the model's gradients over the processes of "
       "mpirun -np P (exact int64 sum and a float sum for comparison; docs/cluster.md); --steps repeats")
      ("elements", po::value(&elements)->default_value(0),
       "with --comm: exchange this many elements instead of the model's gradient count");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride bench [--model NAME] [--batch N] [--micro-batch M] [--steps N] [--threads N]\n"
                     "                    [--isa avx512bf16|avx512|avx2|generic] [--precision fp32|bf16]\n"
                     "                    [--per-layer] [--json] [--trace FILE]\n"
                     "Training throughput on random data (images/s), and the FMA peak it is measured against."))
    return 0;
  if (batch < 1 || steps < 1 || warmup < 0 || micro_batch < 0)
    throw UsageError("bench: --batch and --steps must be >= 1, --warmup and --micro-batch >= 0");
  if (!isa.empty()) set_isa(parse_isa(isa, "--isa"));
  const Isa path = active_isa();
  const Precision precision = [&] {
    try {
      return parse_precision(precision_text, "--precision");
    } catch (const ConfigError& e) {
      throw UsageError(e.what());
    }
  }();
  const bool tracing = !trace_path.empty();
  // A trace is taken at 1 thread unless --threads says otherwise: only that one records every loop.
  std::unique_ptr<ThreadLimit> limit = limit_threads(tracing && threads == 0 ? 1 : threads);
  const bool as_json = vm["json"].as<bool>(), layers = vm["per-layer"].as<bool>();

  ModelSource src = resolve_model(model);
  std::optional<Shape> in;
  if (!input.empty()) in = parse_input_shape(input);
  Network net = build_network(src.text, in, src.where);
  if (vm["comm"].as<bool>()) {
    cluster::Session& session = cluster::Session::current();
    const int64_t count = elements > 0 ? elements : net.learnable_count();
    const cluster::AllreduceTimes t = cluster::bench_allreduce(session, count, static_cast<int>(steps));
    if (t.reports) print_allreduce(t, elements > 0 ? std::to_string(elements) + " elements" : model + "'s gradient",
                                   session.hosts(), as_json);
    return 0;
  }
  check_plan(plan_training(net, batch, 1, 0), "bench: " + src.where + " with --batch " + std::to_string(batch));
  net.init(1);
  const Shape batch_shape = [&] {
    Shape s;
    s.rank = net.input_shape().rank + 1;
    s[0] = batch;
    for (int i = 0; i < net.input_shape().rank; ++i) s[i + 1] = net.input_shape()[i];
    return s;
  }();
  Tensor x(batch_shape);
  const RandomStream rng(1, 99u, 0, 0);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.normal(static_cast<uint64_t>(i));
  const int64_t classes = net.output_shape().numel();
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % classes);
  OptimizerOptions oo;
  oo.momentum = 0.9;
  auto opt = make_optimizer(oo, net);
  LocalGradientReducer reducer;
  micro_batch = resolve_micro_batch(batch, micro_batch, 1);
  TrainingStep training_step(net, *opt, reducer, batch, micro_batch);
  auto step = [&](int64_t s) {
    RunContext ctx{Mode::train, 1, 0, s * batch};
    ctx.precision = precision;
    training_step.run(x, labels, batch, ctx, 0.01);
  };

  for (int64_t s = 0; s < warmup; ++s) step(s);
  std::vector<double> times;
  std::optional<trace::Recorder> recorder;
  if (tracing) recorder.emplace();
  for (int64_t s = 0; s < steps; ++s) {
    const auto t = Clock::now();
    if (recorder) recorder->begin_step();
    step(warmup + s);
    if (recorder) recorder->end_step();
    times.push_back(seconds_since(t));
  }
  std::vector<trace::StepTrace> traced;
  if (recorder) {
    traced = recorder->steps();
    recorder.reset();
  }
  double total = 0;
  for (double t : times) total += t;
  const double ms_per_step = 1e3 * total / static_cast<double>(steps);
  const double img_per_s = static_cast<double>(batch * steps) / total;

  // Training FLOPs per image (see layer_flops), from the shapes of one forward.
  net.forward(x, RunContext{Mode::train, 1, 0, 0});
  double flops_per_image = 0;
  for (size_t i = 0; i < net.layer_count(); ++i) {
    const auto& inputs = net.layer_inputs(i);
    const Shape a = inputs[0] < 0 ? x.shape() : net.layer_output(static_cast<size_t>(inputs[0])).shape();
    const LayerFlops f = layer_flops(net, i, a);
    flops_per_image += (f.forward + f.data + f.weights) / static_cast<double>(batch);
  }
  const int used_threads = max_threads();
  // The peak of the arithmetic the products run on: fp32 FMAs, or bf16 dot-product steps (twice the FLOPs per
  // instruction where vdpbf16ps exists, half where it is emulated with two FMAs).
  const double core_peak = precision == Precision::bf16 ? bf16_peak_gflops(path) : fma_peak_gflops(path);
  const double peak = core_peak * used_threads;
  const double gflops = flops_per_image * img_per_s * 1e-9;

  json out = {{"model", model},
              {"batch", batch},
              {"micro_batch", micro_batch},
              {"threads", used_threads},
              {"isa", isa_name(path)},
              {"precision", precision_name(precision)},
              {"cpu", cpu_model()},
              {"steps", steps},
              {"ms_per_step", ms_per_step},
              {"ms_per_step_median", 1e3 * median(times)},
              {"img_per_s", img_per_s},
              {"train_gflop_per_image", flops_per_image * 1e-9},
              {"gflops", gflops},
              {"fma_peak_gflops", precision == Precision::bf16 ? fma_peak_gflops(path) * used_threads : peak},
              {"fma_peak_gflops_per_core", precision == Precision::bf16 ? fma_peak_gflops(path) : core_peak},
              {"peak_kind", precision == Precision::bf16 ? "bf16" : "fp32"},
              {"peak_gflops", peak},
              {"peak_pct", 100 * gflops / peak}};
  if (!as_json)
    std::printf("model %s, batch %lld (micro-batch %lld), %d thread%s, %s path, %s, on %s:\n"
                "  %.1f ms/step, %.0f images/s (training), %.1f GFLOP/s = %.0f%% of the %s peak %.0f GFLOP/s "
                "(%.0f per core)\n",
                model.c_str(), static_cast<long long>(batch), static_cast<long long>(micro_batch), used_threads,
                used_threads == 1 ? "" : "s", isa_name(path), precision_name(precision), cpu_model().c_str(),
                ms_per_step, img_per_s, gflops, 100 * gflops / peak,
                precision == Precision::bf16 ? "bf16 dot-product" : "FMA", peak, core_peak);
  if (tracing) {
    json run = out;
    run["learnable"] = net.learnable_count();
    run["micro_batches"] = batch / micro_batch;
    json names = json::array();
    for (size_t i = 0; i < net.layer_count(); ++i) names.push_back(net.layer(i).name());
    run["layer_names"] = names;
    write_trace(trace_path, run, traced);
    if (!as_json) std::printf("trace of %lld steps written to %s\n", static_cast<long long>(steps), trace_path.c_str());
  }
  if (layers) out["layers"] = per_layer(net, x, steps, peak, !as_json, precision);
  out["peak_rss_mb"] = peak_rss_mb();
  if (as_json)
    std::cout << out.dump() << "\n";
  else
    std::printf("peak RSS %.1f MB\n", out["peak_rss_mb"].get<double>());
  return 0;
}

}  // namespace stride::app
