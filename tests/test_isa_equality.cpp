// The acceptance test of the kernels' design: training gives the same bits on the AVX-512 and the AVX2 path
// and at any thread count (a task arena of exactly that many threads, even on a 2-core machine), so a model
// trained on an Intel machine equals one trained on an AMD machine. Skipped (with a message) on a CPU that
// cannot run two vector paths.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "framework/core/cpu.hpp"
#include "framework/core/parallel.hpp"
#include "framework/gradient_reducer.hpp"
#include "framework/model_spec.hpp"
#include "framework/optimizer.hpp"
#include "framework/run_setup.hpp"
#include "framework/training_step.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "tests/gradcheck.hpp"
#include "tests/isa_guard.hpp"
#include "tests/random_batch.hpp"

using namespace stride;
using test::IsaGuard;

namespace {

std::vector<Isa> vector_paths() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::avx512bf16, Isa::avx512, Isa::avx2})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct Trained {
  std::vector<float> params, state;
};

// `steps` SGD steps (momentum, weight decay) of `model` on fixed random data, in micro-batches of
// `micro_batch` samples, on the current path and thread count.
Trained train(const std::string& model, int64_t batch, int64_t micro_batch, int steps) {
  Network net = build_network(*zoo_spec(model));
  net.init(3);
  const test::RandomBatch data = test::random_batch(net, batch, 5, 7);
  const Tensor& x = data.x;
  const std::vector<int32_t>& labels = data.labels;
  OptimizerOptions o;
  o.momentum = 0.9;
  o.weight_decay = 5e-4;
  auto opt = make_optimizer(o, net);
  LocalGradientReducer reducer;
  TrainingStep step(net, *opt, reducer, batch, resolve_micro_batch(batch, micro_batch, 1));
  for (int s = 0; s < steps; ++s) step.run(x, labels, batch, RunContext{Mode::train, 1, 0, s * batch}, 0.05);
  return {std::vector<float>(net.params().begin(), net.params().end()),
          std::vector<float>(net.state().begin(), net.state().end())};
}

}  // namespace

TEST_CASE("training cifar10_quick and resnet8 gives the same weights on the AVX-512 and AVX2 paths at 1 and 3 threads") {
  IsaGuard guard;
  const auto paths = vector_paths();
  if (paths.size() < 2) MESSAGE("only one vector path on this CPU: comparing thread counts only");
  struct Run {
    const char* model;
    int64_t batch, micro_batch;
  };
  for (const Run& run : {Run{"cifar10_quick", 24, 0}, Run{"resnet8", 16, 8}}) {
    CAPTURE(run.model);
    set_isa(paths.front());
    Trained reference;
    run_with_threads(1, [&] { reference = train(run.model, run.batch, run.micro_batch, 3); });
    for (Isa isa : paths)
      for (int threads : {1, 3}) {
        if (isa == paths.front() && threads == 1) continue;
        CAPTURE(isa_name(isa));
        CAPTURE(threads);
        set_isa(isa);
        Trained t;
        run_with_threads(threads, [&] { t = train(run.model, run.batch, run.micro_batch, 3); });
        CHECK(same_bits(t.params, reference.params));
        CHECK(same_bits(t.state, reference.state));
      }
  }
}

TEST_CASE("convolution variants and the linear layer: the same bits on every path and thread count, fp32 and bf16") {
  IsaGuard guard;
  std::vector<Isa> paths = vector_paths();
  paths.push_back(Isa::generic);
  struct Variant {
    const char* what;
    Conv2dOptions o;
    Shape in;
  };
  auto make = [](Padding mode, int64_t k, int64_t r, int64_t s, int64_t pad, int64_t stride, int64_t dil, bool bias) {
    Conv2dOptions o;
    o.out_channels = k;
    o.kernel_h = r;
    o.kernel_w = s;
    o.padding = mode;
    o.pad_h = o.pad_w = pad;
    o.stride_h = o.stride_w = stride;
    o.dilation_h = o.dilation_w = dil;
    o.bias = bias;
    return o;
  };
  const std::vector<Variant> variants = {
      // Two with more than one batch chunk (kBatchChunk = 8), so the weight gradient adds chunk partials.
      {"5x5 pad 2 (cifar10_quick)", make(Padding::zeros, 19, 5, 5, 2, 1, 1, true), Shape{10, 5, 12, 13}},
      {"3x3 stride 2 (resnet)", make(Padding::zeros, 17, 3, 3, 1, 2, 1, false), Shape{3, 6, 11, 10}},
      {"1x1 stride 2 (resnet shortcut)", make(Padding::zeros, 33, 1, 1, 0, 2, 1, false), Shape{2, 7, 9, 9}},
      {"1x1 direct", make(Padding::valid, 5, 1, 1, 0, 1, 1, true), Shape{11, 9, 5, 7}},
      {"valid 5x5 (lenet)", make(Padding::valid, 21, 5, 5, 0, 1, 1, true), Shape{2, 3, 14, 14}},
      {"reflect, dilation 2", make(Padding::reflect, 6, 3, 3, 2, 1, 2, true), Shape{2, 4, 9, 8}},
      {"circular stride 2", make(Padding::circular, 6, 3, 3, 1, 2, 1, true), Shape{2, 4, 9, 8}},
  };
  for (Precision precision : {Precision::fp32, Precision::bf16}) {
    for (const Variant& v : variants) {
      CAPTURE(v.what);
      CAPTURE(precision_name(precision));
      RunContext ctx{Mode::train};
      ctx.precision = precision;
      std::vector<float> y0, dx0, grads0;
      for (Isa isa : paths)
        for (int threads : {1, 3}) {
          CAPTURE(isa_name(isa));
          CAPTURE(threads);
          set_isa(isa);
          Conv2d conv("conv", v.o);
          test::LayerParams params(conv, v.in);
          const Tensor x = test::random_tensor(v.in, 3);
          Tensor y, dx;
          std::vector<float> grads;
          run_with_threads(threads, [&] {
            conv.forward(x, y, ctx);
            const Tensor dy = test::random_tensor(y.shape(), 4);
            conv.backward(x, y, dy, &dx, ctx);
          });
          for (const auto& g : params.grads) grads.insert(grads.end(), g.begin(), g.end());
          if (y0.empty()) {
            y0.assign(y.span().begin(), y.span().end());
            dx0.assign(dx.span().begin(), dx.span().end());
            grads0 = grads;
            continue;
          }
          CHECK(same_bits(y.span(), y0));
          CHECK(same_bits(dx.span(), dx0));
          CHECK(same_bits(grads, grads0));
        }
    }
  }
  for (Precision precision : {Precision::fp32, Precision::bf16}) {
    std::vector<float> ref;
    RunContext ctx{Mode::train};
    ctx.precision = precision;
    for (Isa isa : paths) {
      CAPTURE(isa_name(isa));
      CAPTURE(precision_name(precision));
      set_isa(isa);
      LinearOptions o;
      o.out_features = 37;
      Linear fc("fc", o);
      const Shape in{45, 3, 5, 7};
      test::LayerParams params(fc, in);
      const Tensor x = test::random_tensor(in, 5);
      Tensor y, dx;
      fc.forward(x, y, ctx);
      const Tensor dy = test::random_tensor(y.shape(), 6);
      fc.backward(x, y, dy, &dx, ctx);
      std::vector<float> all(y.span().begin(), y.span().end());
      all.insert(all.end(), dx.span().begin(), dx.span().end());
      for (const auto& g : params.grads) all.insert(all.end(), g.begin(), g.end());
      if (ref.empty())
        ref = all;
      else
        CHECK(same_bits(all, ref));
    }
  }
}
