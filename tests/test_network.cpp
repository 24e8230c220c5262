#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "framework/core/errors.hpp"
#include "framework/model_spec.hpp"
#include "framework/core/parallel.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/relu.hpp"
#include "layers/softmax_cross_entropy.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
const std::string kRepo = STRIDE_REPO_DIR;
}  // namespace

TEST_CASE("zoo parameter counts match Caffe's and He et al.'s models") {
  CHECK(build_network(*zoo_spec("lenet5")).learnable_count() == 431080);
  CHECK(build_network(*zoo_spec("cifar10_quick")).learnable_count() == 145578);
  CHECK(build_network(*zoo_spec("resnet8")).learnable_count() == 78042);
  // resnet20 = resnet8 plus two more basic blocks per stage: 2*(2*2304+64) + 2*(2*9216+128) + 2*(2*36864+256).
  CHECK(build_network(*zoo_spec("resnet20")).learnable_count() == 78042 + 2 * (4608 + 64) + 2 * (18432 + 128) +
                                                                       2 * (73728 + 256));
  // mlp on MNIST-sized input: 784*256+256 + 256*10+10.
  CHECK(build_network(*zoo_spec("mlp"), Shape{1, 28, 28}).learnable_count() == 784 * 256 + 256 + 2570);
}

TEST_CASE("the lecture's one-layer megapixel classifier has three billion parameters and allocates none") {
  Network net = build_network(read_file(kRepo + "/docs/specs/megapixel_fc.json"));
  CHECK(net.learnable_count() == 3000001000LL);
  CHECK_FALSE(net.allocated());
  CHECK(net.params().empty());
}

TEST_CASE("cifar10_quick shapes follow Caffe's ceil-mode pooling and names follow its prototxt") {
  Network net = build_network(*zoo_spec("cifar10_quick"));
  std::vector<std::string> names;
  for (const auto& row : net.summary()) names.push_back(row.name);
  CHECK(names == std::vector<std::string>{"conv1", "pool1", "relu1", "conv2", "relu2", "pool2", "conv3", "relu3",
                                          "pool3", "ip1", "ip2"});
  CHECK(net.summary()[1].output == Shape{1, 32, 16, 16});
  CHECK(net.summary()[5].output == Shape{1, 32, 8, 8});
  CHECK(net.summary()[8].output == Shape{1, 64, 4, 4});
  CHECK(net.entry("conv1/weight").shape == Shape{32, 3, 5, 5});
  CHECK(net.entry("ip1/weight").shape == Shape{64, 1024});
  CHECK(net.entry("ip2/bias").shape == Shape{10});
  CHECK_FALSE(net.entry("ip2/bias").weight_decay);
  // Forward FLOPs per image: conv1 4.9 M, conv2 13.1 M, conv3 6.6 M (DESIGN.md), ~24.7 M in all.
  CHECK(net.forward_flops_per_sample() == doctest::Approx(24.7e6).epsilon(0.02));
}

TEST_CASE("lenet5 and resnet8 parameter names and batch-norm state") {
  Network lenet = build_network(*zoo_spec("lenet5"));
  CHECK(lenet.entry("conv1/weight").shape == Shape{20, 1, 5, 5});
  CHECK(lenet.entry("conv2/weight").shape == Shape{50, 20, 5, 5});
  CHECK(lenet.entry("ip1/weight").shape == Shape{500, 800});
  CHECK(lenet.output_shape() == Shape{10});
  Network r8 = build_network(*zoo_spec("resnet8"));
  CHECK(r8.entry("bn1/running_mean").role == ParamRole::state);
  CHECK(r8.entry("s2b1_down_conv/weight").shape == Shape{32, 16, 1, 1});
  CHECK(r8.entry("fc/weight").shape == Shape{10, 64});
  // Running mean and variance of every BN: 16*3 (stem, stage 1) + 32*3 + 64*3 channels, two buffers each.
  CHECK(r8.state_count() == 2 * (16 * 3 + 32 * 3 + 64 * 3));
}

TEST_CASE("spec errors name the file, the layer and the problem") {
  auto message = [](const std::string& text, std::optional<Shape> input = std::nullopt) {
    try {
      build_network(text, input, "m.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"conv3d"}]})").find("m.json: layer 'a' (conv3d): unknown layer type") == 0);
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"relu","kernal":3}]})").find("unknown field(s) 'kernal'") != std::string::npos);
  CHECK(message(R"({"layers":[{"name":"a","type":"relu"}]})").find("no \"input\" shape") != std::string::npos);
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"relu"},{"name":"a","type":"relu"}]})").find("duplicate layer name 'a'") != std::string::npos);
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"add","inputs":["input","b"]}]})").find("'b', which is not an earlier layer") != std::string::npos);
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"relu"}]})", Shape{3, 8, 8}).find("takes input") != std::string::npos);
  CHECK(message(R"({"input":[1,8,8],"layers":[{"name":"a","type":"relu"}], "optimizer": 1})").find("unknown top-level field 'optimizer'") != std::string::npos);
  CHECK(message("{ not json").find("m.json: invalid JSON") == 0);
  CHECK(message(R"({"input":[1,4,4],"layers":[{"name":"c","type":"conv2d","out_channels":2,"kernel":5}]})").find("m.json: c") == 0);
  CHECK_THROWS_AS(resolve_model("no_such_model"), ConfigError);
}

TEST_CASE("the complete spec example in docs builds") {
  Network net = build_network(read_file(kRepo + "/docs/specs/small_resnet.json"));
  CHECK(net.output_shape() == Shape{10});
  CHECK(net.layer_count() == 12);
  // conv1 432 + bn 32 + block convs 2*(2304+16) + fc 170.
  CHECK(net.learnable_count() == 432 + 32 + 2 * (2304 + 16) + 170);
}

TEST_CASE("a network built in C++ equals the one built from the same spec") {
  Network coded(Shape{1, 28, 28});
  Conv2dOptions conv1;
  conv1.out_channels = 20;
  conv1.kernel_h = conv1.kernel_w = 5;
  coded.add(std::make_unique<Conv2d>("conv1", conv1));
  Pool2dOptions pool;
  pool.kernel_h = pool.kernel_w = pool.stride_h = pool.stride_w = 2;
  coded.add(std::make_unique<MaxPool2d>("pool1", pool));
  Conv2dOptions conv2 = conv1;
  conv2.out_channels = 50;
  coded.add(std::make_unique<Conv2d>("conv2", conv2));
  coded.add(std::make_unique<MaxPool2d>("pool2", pool));
  LinearOptions ip1;
  ip1.out_features = 500;
  coded.add(std::make_unique<Linear>("ip1", ip1));
  coded.add(std::make_unique<Relu>("relu1"));
  LinearOptions ip2;
  ip2.out_features = 10;
  coded.add(std::make_unique<Linear>("ip2", ip2));

  Network spec = build_network(*zoo_spec("lenet5"));
  REQUIRE(coded.learnable_count() == spec.learnable_count());
  REQUIRE(coded.param_entries().size() == spec.param_entries().size());
  for (size_t i = 0; i < spec.param_entries().size(); ++i) {
    CHECK(coded.param_entries()[i].name == spec.param_entries()[i].name);
    CHECK(coded.param_entries()[i].shape == spec.param_entries()[i].shape);
  }
  coded.init(5);
  spec.init(5);
  const Tensor x = test::random_tensor(Shape{3, 1, 28, 28}, 4);
  const Tensor a = coded.forward(x, RunContext{});
  const Tensor& b = spec.forward(x, RunContext{});
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0);
  // A layer fed a shape it cannot take is rejected when added, naming it.
  Network bad(Shape{1, 4, 4});
  CHECK_THROWS_WITH_AS(bad.add(std::make_unique<Conv2d>("big", conv1)), doctest::Contains("big"), ShapeError);
}

namespace {
// Loss of the network on (x, labels) in the given mode, and optionally its gradients.
double network_loss(Network& net, const Tensor& x, const std::vector<int32_t>& labels, const RunContext& ctx,
                    bool backward) {
  const Tensor& logits = net.forward(x, ctx);
  Tensor dlogits;
  double loss = softmax_cross_entropy(logits, labels, backward ? &dlogits : nullptr);
  if (backward) net.backward(dlogits, ctx);
  return loss;
}
}  // namespace

TEST_CASE("whole-network gradients match central differences (conv, bn, pooling, residual add, dropout)") {
  const std::string spec = R"({"input": [2, 6, 6], "layers": [
    {"name": "conv1", "type": "conv2d", "out_channels": 3, "kernel": 3, "pad": 1, "padding": "circular"},
    {"name": "bn1", "type": "batchnorm2d"},
    {"name": "act1", "type": "tanh"},
    {"name": "side", "type": "conv2d", "out_channels": 3, "kernel": 1, "inputs": ["input"]},
    {"name": "sum", "type": "add", "inputs": ["act1", "side"]},
    {"name": "pool", "type": "avg_pool2d", "kernel": 3, "stride": 2, "pad": 1, "ceil_mode": true},
    {"name": "lp", "type": "lp_pool2d", "kernel": 2, "stride": 1, "p": 2},
    {"name": "drop", "type": "dropout", "p": 0.25},
    {"name": "fc", "type": "linear", "out_features": 4},
    {"name": "sig", "type": "sigmoid"},
    {"name": "out", "type": "linear", "out_features": 3}]})";
  for (Mode mode : {Mode::train, Mode::eval}) {
    CAPTURE(static_cast<int>(mode));
    Network net = build_network(spec);
    net.init(3);
    // Move the running variances away from 1 so eval mode is not the identity normalization.
    for (float& v : net.values_of("bn1/running_var")) v = 0.7f;
    const Tensor x = test::random_tensor(Shape{4, 2, 6, 6}, 11);
    const std::vector<int32_t> labels = {0, 2, 1, 2};
    const RunContext ctx{mode, 5, 1, 0};
    net.zero_grad();
    network_loss(net, x, labels, ctx, true);
    std::vector<float> analytic(net.grads().begin(), net.grads().end());
    const double eps = 1e-2;
    int bad = 0;
    auto params = net.params();
    for (size_t i = 0; i < params.size(); ++i) {
      const float saved = params[i];
      params[i] = saved + static_cast<float>(eps);
      const double lp = network_loss(net, x, labels, ctx, false);
      params[i] = saved - static_cast<float>(eps);
      const double lm = network_loss(net, x, labels, ctx, false);
      params[i] = saved;
      const double numeric = (lp - lm) / (2 * eps);
      if (std::abs(analytic[i] - numeric) > 1e-3 + 2e-2 * std::abs(numeric)) {
        if (++bad <= 5) FAIL_CHECK("param " << i << ": analytic " << analytic[i] << " numeric " << numeric);
      }
    }
    CHECK(bad == 0);
  }
}

namespace {
struct PassResult {
  std::vector<float> logits, grads, state;
};
PassResult run_pass(const std::string& model, int64_t batch, int threads) {
  ThreadLimit limit(threads);
  Network net = build_network(*zoo_spec(model));
  net.init(42);
  Shape in = net.input_shape();
  const Tensor x = test::random_tensor(Shape{batch, in[0], in[1], in[2]}, 9);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % 10);
  const RunContext ctx{Mode::train, 42, 0, 0};
  net.zero_grad();
  const Tensor& logits = net.forward(x, ctx);
  PassResult r;
  r.logits.assign(logits.data(), logits.data() + logits.numel());
  Tensor dlogits;
  softmax_cross_entropy(logits, labels, &dlogits);
  net.backward(dlogits, ctx);
  r.grads.assign(net.grads().begin(), net.grads().end());
  r.state.assign(net.state().begin(), net.state().end());
  return r;
}
void check_bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  // memcmp of an empty vector's null data() is undefined behaviour (UBSan): compare only what exists.
  CHECK((a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0));
}
}  // namespace

TEST_CASE("forward and backward are bit-identical at 1, 2 and 4 threads") {
  for (const char* model : {"cifar10_quick", "resnet8"}) {
    CAPTURE(model);
    PassResult one = run_pass(model, 24, 1);
    for (int threads : {2, 4}) {
      CAPTURE(threads);
      PassResult many = run_pass(model, 24, threads);
      check_bitwise(one.logits, many.logits);
      check_bitwise(one.grads, many.grads);
      check_bitwise(one.state, many.state);
    }
  }
}

TEST_CASE("init is a pure function of the seed") {
  Network a = build_network(*zoo_spec("lenet5"));
  Network b = build_network(*zoo_spec("lenet5"));
  a.init(1);
  b.init(1);
  CHECK(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
  b.init(2);
  CHECK_FALSE(std::equal(a.params().begin(), a.params().end(), b.params().begin()));
  for (float v : a.values_of("conv1/bias")) CHECK(std::abs(v) <= 1.0f / 5.0f);  // 1/sqrt(fan_in = 25)
}
