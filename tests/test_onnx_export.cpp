// `stride export --format onnx` (issue 20) against a runtime nobody here wrote: ONNX Runtime 1.30 from npm
// (onnxruntime-node, installed into the build tree by ctest's onnxruntime_npm fixture) run by Node.js. Each
// model is trained a few steps by the real binary, exported, passed through ONNX's own checker, and run on
// 64 real test images given as raw 0-255 pixels; the outputs must equal stride's eval outputs for the same
// images (BatchAssembler's normalization, eval-mode forward) within 1e-5 of the image's largest logit, with
// the same top-1 class. PyTorch's torch.onnx.export is the reference for what such a file holds.
#include <doctest/doctest.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/errors.hpp"
#include "framework/input_pipeline.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"
#include "framework/onnx_export.hpp"
#include "io/checkpoint.hpp"
#include "io/detect.hpp"
#include "io/image.hpp"
#include "layers/softmax_cross_entropy.hpp"
#include "tests/data_rule.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace stride;
using stride::test::run_command;
using stride::test::run_stride;
using stride::test::TempDir;

namespace {

const std::string kCifar = std::string(STRIDE_SHARED_DATA) + "/cifar10-sample";
const std::string kMnist = std::string(STRIDE_SHARED_DATA) + "/mnist-digits-sample";
constexpr int64_t kImages = 64;
constexpr double kTolerance = 1e-5;  // of the image's largest |logit|

// The npm package's node_modules, after checking that it and Node.js are there: a missing runtime fails
// the test with the reason, never skips it.
std::string onnx_runtime_modules() {
  const std::string modules = std::string(STRIDE_NPM_DIR) + "/node_modules";
  REQUIRE_MESSAGE(fs::exists(modules + "/onnxruntime-node/package.json"),
                  "ONNX Runtime is not installed in " << modules << ". ctest's fixture onnxruntime_npm installs it "
                  "(npm install --ignore-scripts --prefix " STRIDE_NPM_DIR " onnxruntime-node@1.30.0); it needs npm "
                  "and the npm registry");
  const auto node = run_command("node --version");
  REQUIRE_MESSAGE(node.exit_code == 0, "Node.js (`node`) runs ONNX Runtime here and was not found: " << node.output);
  return modules;
}

// ONNX's checker as Python's check_model(full_check=True) runs it: the model check, then shape inference with
// type checks in strict mode.
onnx::ModelProto load_checked(const std::string& path) {
  onnx::ModelProto model;
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(model.ParseFromIstream(&in), path << " does not parse as an ONNX ModelProto");
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1));
  } catch (const std::exception& e) {
    FAIL("ONNX checker on " << path << ": " << e.what());
  }
  return model;
}

struct Images {
  Shape shape;  // (N, C, H, W)
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> labels;
};

// The first n test images of `data`, raw.
Images test_images(const std::string& data, int64_t n) {
  const DatasetSplits splits = open_dataset(data);
  const DatasetInfo& info = splits.test->info();
  Images im;
  im.shape = Shape{n, info.channels, info.height, info.width};
  im.pixels.resize(static_cast<size_t>(im.shape.numel()));
  splits.test->read_images(0, n, im.pixels.data());
  im.labels.assign(splits.test->labels().begin(), splits.test->labels().begin() + n);
  return im;
}

// stride's eval outputs for the first n test images: the weights' stored spec and normalization, eval's batch
// assembly, an eval-mode forward. (N, classes).
Tensor stride_logits(const std::string& weights, const std::string& data, int64_t n) {
  const Checkpoint ckpt = read_weights(weights);
  Network net = build_network(ckpt.model_spec, std::nullopt, weights);
  net.allocate();
  restore_parameters(net, ckpt, weights);
  const DatasetSplits splits = open_dataset(data);
  const PrefixSource first(*splits.test, n);
  BatchAssembler assembler(first, Normalization{ckpt.norm_mean, ckpt.norm_std}, Augment::none, 0);
  std::vector<int64_t> indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) indices[static_cast<size_t>(i)] = i;
  Tensor x;
  std::vector<int32_t> labels;
  assembler.assemble(indices, 0, x, labels);
  const Tensor& y = net.forward(x, RunContext{Mode::eval, 0, 0, 0});
  Tensor out(Shape{n, y.numel() / n});
  std::copy(y.data(), y.data() + y.numel(), out.data());
  return out;
}

struct RuntimeResult {
  std::string output_name;
  std::vector<int64_t> dims;
  std::vector<float> values;
};

// ONNX Runtime's output for raw pixel values.
RuntimeResult run_onnx_runtime(const std::string& model, const Images& im, const TempDir& dir) {
  const std::string modules = onnx_runtime_modules();
  const std::string in_path = dir / "input.f32", out_path = dir / "output.f32";
  {
    std::vector<float> x(im.pixels.begin(), im.pixels.end());
    std::ofstream out(in_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
  }
  std::ostringstream cmd;
  cmd << "node " << STRIDE_REPO_DIR << "/tests/onnx_runtime_run.js " << modules << " " << model << " " << in_path;
  for (int i = 0; i < 4; ++i) cmd << " " << im.shape[i];
  cmd << " " << out_path;
  const auto r = run_command(cmd.str());
  INFO(cmd.str() << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  RuntimeResult res;
  res.output_name = j["output"].get<std::string>();
  res.dims = j["dims"].get<std::vector<int64_t>>();
  std::ifstream in(out_path, std::ios::binary | std::ios::ate);
  const auto bytes = static_cast<size_t>(in.tellg());
  res.values.resize(bytes / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(res.values.data()), static_cast<std::streamsize>(bytes));
  return res;
}

int64_t argmax(const float* v, int64_t k) { return std::max_element(v, v + k) - v; }

// Every output within kTolerance of the image's largest |expected| value, and the same top-1 class for every
// image. Prints the largest deviation seen.
void check_outputs_match(const Tensor& expected, const std::vector<float>& got, const std::string& what) {
  const int64_t n = expected.shape()[0], k = expected.shape()[1];
  REQUIRE(static_cast<int64_t>(got.size()) == n * k);
  double worst = 0;
  int64_t bad = 0, top1_differs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* e = expected.data() + i * k;
    const float* g = got.data() + i * k;
    double scale = 0;
    for (int64_t j = 0; j < k; ++j) scale = std::max(scale, std::fabs(static_cast<double>(e[j])));
    for (int64_t j = 0; j < k; ++j) {
      const double dev = std::fabs(static_cast<double>(g[j]) - e[j]) / (scale > 0 ? scale : 1.0);
      worst = std::max(worst, std::isnan(dev) ? INFINITY : dev);
      if (!(dev <= kTolerance)) ++bad;
    }
    if (argmax(e, k) != argmax(g, k)) ++top1_differs;
  }
  MESSAGE(what << ": " << n << " images, largest deviation " << worst << " of the image's largest |logit|");
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " outputs differ by more than " << kTolerance << " (worst " << worst << ")");
  CHECK_MESSAGE(top1_differs == 0, what << ": top-1 differs on " << top1_differs << " images");
}

// A few training steps (4 of 32 images), so batch norm's running statistics and every weight have moved off
// their initial values.
std::string train_few_steps(const std::string& model, const std::string& data, const TempDir& dir) {
  const std::string run = dir / "run";
  const auto r = run_stride("train --model " + model + " --data " + data +
                            " --epochs 1 --limit-train 128 --limit-test 64 --batch 32 --lr 0.05 --no-progress --out " + run);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return run + "/final.h5";
}

// Train, export (dynamic batch), check, run: the test of one model.
void check_model_against_runtime(const std::string& model, const std::string& data, const std::string& tag) {
  if (!stride::test::have_data(data)) return;
  TempDir dir("onnx-" + tag);
  const std::string weights = train_few_steps(model, data, dir);
  const std::string onnx_path = dir / (tag + ".onnx");
  const auto e = run_stride("export --weights " + weights + " --format onnx --out " + onnx_path);
  INFO(e.output);
  REQUIRE(e.exit_code == 0);
  const onnx::ModelProto m = load_checked(onnx_path);
  CHECK(m.graph().input(0).name() == "image");
  CHECK(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param() == "N");
  CHECK(m.graph().output(0).name() == "logits");

  const Images im = test_images(data, kImages);
  const Tensor expected = stride_logits(weights, data, kImages);
  const RuntimeResult got = run_onnx_runtime(onnx_path, im, dir);
  CHECK(got.output_name == "logits");
  CHECK(got.dims == std::vector<int64_t>{kImages, expected.shape()[1]});
  check_outputs_match(expected, got.values, tag);

  // `stride eval` on the same 64 images counts the same correct predictions as ONNX Runtime's top-1.
  const auto ev = run_stride("eval --weights " + weights + " --data " + data + " --limit 64 --json");
  REQUIRE_MESSAGE(ev.exit_code == 0, ev.output);
  const auto j = nlohmann::json::parse(ev.output.substr(ev.output.find('{')));
  const int64_t k = expected.shape()[1];
  int64_t correct = 0;
  for (int64_t i = 0; i < kImages; ++i)
    correct += argmax(got.values.data() + i * k, k) == im.labels[static_cast<size_t>(i)] ? 1 : 0;
  CHECK(j["accuracy"].get<double>() == doctest::Approx(static_cast<double>(correct) / kImages));
}

}  // namespace

TEST_CASE("onnx: lenet5 trained on MNIST digits equals ONNX Runtime on 64 test images") {
  check_model_against_runtime("lenet5", kMnist, "lenet5");
}

TEST_CASE("onnx: cifar10_quick (ceil-mode pools, Caffe's average divisor) equals ONNX Runtime") {
  check_model_against_runtime("cifar10_quick", kCifar, "cifar10_quick");
}

TEST_CASE("onnx: resnet8 (batch norm, projection shortcuts, residual adds) equals ONNX Runtime") {
  check_model_against_runtime("resnet8", kCifar, "resnet8");
}

TEST_CASE("onnx: every layer and option (docs/specs/every_layer.json) equals ONNX Runtime") {
  check_model_against_runtime(std::string(STRIDE_REPO_DIR) + "/docs/specs/every_layer.json", kCifar, "every_layer");
}

TEST_CASE("onnx: metadata, --softmax, a fixed --batch, and predict's classes for the same PNG pixels") {
  if (!stride::test::have_data(kCifar)) return;
  TempDir dir("onnx-options");
  const std::string weights = train_few_steps("cifar10_quick", kCifar, dir);
  const std::string onnx_path = dir / "probs.onnx";
  const auto e = run_stride("export --weights " + weights + " --format onnx --out " + onnx_path +
                            " --batch 64 --opset 17 --softmax");
  INFO(e.output);
  REQUIRE(e.exit_code == 0);
  const onnx::ModelProto m = load_checked(onnx_path);

  // Where it came from: stride's version, the class names, the normalization, the spec and the run's config.
  const Checkpoint ckpt = read_weights(weights);
  std::map<std::string, std::string> meta;
  for (const auto& p : m.metadata_props()) meta[p.key()] = p.value();
  CHECK(meta["stride_version"] == STRIDE_VERSION);
  CHECK(meta["model"] == "cifar10_quick");
  CHECK(nlohmann::json::parse(meta["class_names"]) == nlohmann::json(ckpt.class_names));
  CHECK(ckpt.class_names.size() == 10);
  CHECK(nlohmann::json::parse(meta["run_config"]) == nlohmann::json::parse(ckpt.run_config));
  CHECK(nlohmann::json::parse(meta["run_config"])["schedule"]["base_lr"] == 0.05);
  CHECK(nlohmann::json::parse(meta["normalization"])["mean"] == nlohmann::json(ckpt.norm_mean));
  CHECK(meta["model_spec"] == ckpt.model_spec);
  CHECK(m.producer_name() == "stride");
  REQUIRE(m.opset_import_size() == 1);
  CHECK(m.opset_import(0).version() == 17);
  CHECK(m.graph().input(0).type().tensor_type().shape().dim(0).dim_value() == 64);
  // Only standard operators of the default domain.
  for (const auto& node : m.graph().node()) CHECK_MESSAGE(node.domain().empty(), node.op_type());

  // Probabilities: the softmax of stride's logits.
  const Images im = test_images(kCifar, kImages);
  Tensor probs;
  softmax(stride_logits(weights, kCifar, kImages), probs);
  const RuntimeResult got = run_onnx_runtime(onnx_path, im, dir);
  CHECK(got.output_name == "probabilities");
  CHECK(got.dims == std::vector<int64_t>{kImages, 10});
  check_outputs_match(probs, got.values, "cifar10_quick --softmax");

  // `stride predict` on PNG files of four test images names ONNX Runtime's top-1 class for their pixels.
  std::string files;
  for (int64_t i = 0; i < 4; ++i) {
    Image img(3, 32, 32);
    std::memcpy(img.pixels.data(), im.pixels.data() + i * 3 * 32 * 32, img.pixels.size());
    const std::string path = dir / ("test" + std::to_string(i) + ".png");
    write_png(img, path);
    files += " " + path;
  }
  const auto p = run_stride("predict --top 1 --weights " + weights + files);
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  std::istringstream lines(p.output);
  std::string line;
  int64_t image = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("  ", 0) != 0) continue;  // the file name lines
    std::istringstream words(line);
    std::string name;
    words >> name;
    REQUIRE(image < 4);
    CHECK(name == ckpt.class_names[static_cast<size_t>(argmax(got.values.data() + image * 10, 10))]);
    ++image;
  }
  CHECK(image == 4);
}

TEST_CASE("onnx: errors are one clear line, exit 1 or 2, and leave no file behind") {
  if (!stride::test::have_data(kCifar)) return;
  TempDir dir("onnx-errors");
  const std::string weights = train_few_steps("cifar10_quick", kCifar, dir);
  const fs::path out_dir = dir / "out";
  fs::create_directories(out_dir);
  const std::string out = (out_dir / "model.onnx").string();
  auto fails = [&](const std::string& args, int code, const std::string& names) {
    const auto r = run_stride("export " + args);
    INFO("stride export " << args << "\n" << r.output);
    CHECK(r.exit_code == code);
    CHECK(r.output.find(names) != std::string::npos);
    CHECK(r.output.find("error") != std::string::npos);
    CHECK(fs::is_empty(out_dir));  // no model.onnx, no temporary
  };
  // Missing weights; weights that do not fit the spec; a layer type nobody knows; wrong flags.
  fails("--weights " + dir / "nowhere.h5" + " --out " + out, 1, "nowhere.h5");
  fails("--weights " + weights + " --model resnet8 --out " + out, 1, "conv1");
  std::ofstream(dir / "swish.json") << R"({"name": "s", "input": [3, 32, 32], "layers": [
      {"name": "conv1", "type": "conv2d", "out_channels": 32, "kernel": 5, "pad": 2},
      {"name": "act", "type": "swish"}]})";
  fails("--weights " + weights + " --model " + dir / "swish.json" + " --out " + out, 1, "swish");
  fails("--weights " + weights + " --format tflite --out " + out, 2, "tflite");
  fails("--weights " + weights + " --opset 18 --out " + out, 2, "--opset");
  fails("--weights " + weights + " --batch -1 --out " + out, 2, "--batch");
  fails("--weights " + weights, 2, "out");

  // A good file already at --out stays as it was when the export fails.
  std::ofstream(out) << "an earlier model";
  const auto r = run_stride("export --weights " + weights + " --model resnet8 --out " + out);
  CHECK(r.exit_code == 1);
  std::ifstream kept(out);
  std::string text((std::istreambuf_iterator<char>(kept)), std::istreambuf_iterator<char>());
  CHECK(text == "an earlier model");
  CHECK(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()) == 1);
}

namespace {
// A layer stride's spec files cannot name: what a future layer without an ONNX mapping looks like to the
// exporter.
class Swish final : public Layer {
 public:
  using Layer::Layer;
  std::string_view type() const override { return "swish"; }
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const RunContext&) override {
    y.resize(x.shape());
    for (int64_t i = 0; i < x.numel(); ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
  }
  void backward(const Tensor&, const Tensor&, const Tensor&, Tensor*, const RunContext&) override {}
};
}  // namespace

TEST_CASE("onnx: a layer without an ONNX form is an error naming it, never a different graph") {
  Network net(Shape{1, 8, 8});
  net.add(std::make_unique<Swish>("act"));
  net.allocate();
  const Normalization norm{{0.5f}, {0.25f}};
  CHECK_THROWS_WITH_AS(export_onnx(net, norm, {}, "m", {}), doctest::Contains("layer 'act' (swish)"), ConfigError);
  // Feature-vector models have no image input to export.
  Network features = build_network(R"({"input": [16], "layers": [{"name": "fc", "type": "linear", "out_features": 4}]})");
  features.allocate();
  CHECK_THROWS_WITH_AS(export_onnx(features, norm, {}, "f", {}), doctest::Contains("not images"), ConfigError);
}

TEST_CASE("onnx: layers named like the graph's own tensors (image, normalize, logits) still give a valid graph") {
  Network net = build_network(R"({"input": [1, 6, 6], "layers": [
      {"name": "image", "type": "conv2d", "out_channels": 2, "kernel": 3, "pad": 1, "padding": "circular"},
      {"name": "normalize", "type": "relu"},
      {"name": "normalize/scale", "type": "avg_pool2d", "kernel": 3, "stride": 2, "ceil_mode": true},
      {"name": "logits", "type": "linear", "out_features": 3}]})");
  net.allocate();
  net.init(1);
  std::string bytes;
  // export_onnx runs ONNX's checker, which refuses a tensor with two producers.
  REQUIRE_NOTHROW(bytes = export_onnx(net, Normalization{{0.5f}, {0.25f}}, {}, "clash", {}));
  onnx::ModelProto m;
  REQUIRE(m.ParseFromString(bytes));
  CHECK(m.graph().input(0).name() == "image");
  CHECK(m.graph().output(0).name() == "logits");
  std::set<std::string> outputs;
  for (const auto& node : m.graph().node()) CHECK(outputs.insert(node.output(0)).second);
}

TEST_CASE("onnx: a fully convolutional classifier ((N, K, 1, 1) from global pooling) gives logits (N, K)") {
  Network net = build_network(R"({"input": [3, 9, 7], "layers": [
      {"name": "conv", "type": "conv2d", "out_channels": 5, "kernel": 3, "pad": 1, "padding": "replicate"},
      {"name": "gap", "type": "global_avg_pool2d"}]})");
  net.allocate();
  net.init(3);
  const Normalization norm{{0.4f, 0.5f, 0.6f}, {0.2f, 0.25f, 0.3f}};
  TempDir dir("onnx-fcn");
  const std::string path = dir / "fcn.onnx";
  write_file_atomically(path, export_onnx(net, norm, {}, "fcn", {}));
  load_checked(path);
  // Pixels from a fixed pattern, normalized as BatchAssembler does.
  Images im;
  im.shape = Shape{4, 3, 9, 7};
  im.pixels.resize(static_cast<size_t>(im.shape.numel()));
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  Tensor x(im.shape);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const auto [scale, shift] = pixel_affine(norm, (i / (9 * 7)) % 3);
    x[i] = static_cast<float>(im.pixels[static_cast<size_t>(i)]) * scale + shift;
  }
  const Tensor& y = net.forward(x, RunContext{});
  Tensor expected(Shape{4, 5});
  std::copy(y.data(), y.data() + y.numel(), expected.data());
  const RuntimeResult got = run_onnx_runtime(path, im, dir);
  CHECK(got.dims == std::vector<int64_t>{4, 5});
  check_outputs_match(expected, got.values, "fcn");
}
