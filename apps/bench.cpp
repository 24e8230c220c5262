#include <chrono>
#include <cstdio>
#include <iostream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "framework/core/errors.hpp"
#include "framework/memory_plan.hpp"
#include "framework/model_spec.hpp"
#include "framework/optimizer.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"
#include "layers/softmax_cross_entropy.hpp"

namespace stride::app {

// Times training steps (forward, loss, backward, SGD update) on random data, so a layer or kernel change
// can be measured without a dataset. Prints images/s; --per-layer adds forward+backward time per layer.
int bench(int argc, char** argv) {
  std::string model = "cifar10_quick", input;
  int64_t batch = 64, steps = 20, warmup = 3;
  int threads = 0;
  po::options_description opts("stride bench options");
  opts.add_options()
      ("model,m", po::value(&model)->default_value(model), "zoo name or spec file")
      ("input,i", po::value(&input), "input shape C,H,W when the spec has none")
      ("batch", po::value(&batch)->default_value(batch), "batch size")
      ("steps", po::value(&steps)->default_value(steps), "timed training steps")
      ("warmup", po::value(&warmup)->default_value(warmup), "untimed steps first")
      ("threads", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("per-layer", po::bool_switch(), "also time forward and backward of each layer");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride bench [--model NAME] [--batch N] [--steps N] [--threads N] [--per-layer]\n"
                     "Training throughput on random data (images/s)."))
    return 0;
  if (batch < 1 || steps < 1 || warmup < 0) throw UsageError("bench: --batch and --steps must be >= 1, --warmup >= 0");
  std::unique_ptr<ThreadLimit> limit = limit_threads(threads);

  ModelSource src = resolve_model(model);
  std::optional<Shape> in;
  if (!input.empty()) in = parse_input_shape(input);
  Network net = build_network(src.text, in, src.where);
  check_plan(plan_training(net, batch, 1, 0), "bench: " + src.where + " with --batch " + std::to_string(batch));
  net.init(1);
  Shape x_shape = net.input_shape();
  Shape batch_shape;
  batch_shape.rank = x_shape.rank + 1;
  batch_shape[0] = batch;
  for (int i = 0; i < x_shape.rank; ++i) batch_shape[i + 1] = x_shape[i];
  Tensor x(batch_shape);
  const RandomStream rng(1, 99u, 0, 0);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.normal(static_cast<uint64_t>(i));
  const int64_t classes = net.output_shape().numel();
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % classes);
  std::vector<OptimizerParam> params;
  for (const auto& e : net.param_entries())
    if (e.role == ParamRole::learnable) params.push_back({e.name, e.offset, e.size, e.weight_decay});
  auto opt = Optimizer::create(OptimizerOptions{}, params, net.learnable_count());
  Tensor dlogits;
  using Clock = std::chrono::steady_clock;
  auto step = [&](int64_t s) {
    const RunContext ctx{Mode::train, 1, 0, s * batch};
    net.zero_grad();
    const Tensor& logits = net.forward(x, ctx);
    softmax_cross_entropy(logits, labels, &dlogits);
    net.backward(dlogits, ctx);
    opt->step(net.params(), net.grads(), 0.01);
  };
  for (int64_t s = 0; s < warmup; ++s) step(s);
  const auto t0 = Clock::now();
  for (int64_t s = 0; s < steps; ++s) step(warmup + s);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("model %s, batch %lld, %d threads: %.1f ms/step, %.0f images/s (training)\n", model.c_str(),
              static_cast<long long>(batch), max_threads(), 1e3 * seconds / static_cast<double>(steps),
              static_cast<double>(batch * steps) / seconds);

  if (vm["per-layer"].as<bool>()) {
    // Per-layer: run each layer alone on its recorded input, forward then backward, `steps` times.
    std::printf("%-20s %-18s %12s %12s\n", "layer", "type", "forward ms", "backward ms");
    net.forward(x, RunContext{Mode::train, 1, 0, 0});
    std::vector<Tensor> inputs;
    Tensor cur = x;
    for (size_t i = 0; i < net.layer_count(); ++i) {
      Layer& layer = net.layer(i);
      if (layer.input_count() != 1) continue;  // residual adds are copies; time them with the network
      Tensor y, dx;
      double fwd = 0, bwd = 0;
      for (int64_t s = 0; s < steps; ++s) {
        const RunContext ctx{Mode::train, 1, 0, 0};
        auto t = Clock::now();
        layer.forward(cur, y, ctx);
        fwd += std::chrono::duration<double>(Clock::now() - t).count();
        t = Clock::now();
        layer.backward(cur, y, y, &dx, ctx);
        bwd += std::chrono::duration<double>(Clock::now() - t).count();
      }
      std::printf("%-20s %-18s %12.3f %12.3f\n", layer.name().c_str(), std::string(layer.type()).c_str(),
                  1e3 * fwd / static_cast<double>(steps), 1e3 * bwd / static_cast<double>(steps));
      cur = y;
    }
  }
  return 0;
}

}  // namespace stride::app
