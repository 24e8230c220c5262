#include "framework/model_spec.hpp"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"
#include "layers/registry.hpp"

namespace stride {

using nlohmann::json;

namespace {

json layer(const std::string& name, const std::string& type, json options = json::object()) {
  json j = {{"name", name}, {"type", type}};
  j.update(options);
  return j;
}

// Caffe's examples/mnist/lenet_train_test.prototxt, with its layer names.
json lenet5() {
  return {{"name", "lenet5"},
          {"input", {1, 28, 28}},
          {"layers",
           {layer("conv1", "conv2d", {{"out_channels", 20}, {"kernel", 5}}),
            layer("pool1", "max_pool2d", {{"kernel", 2}, {"stride", 2}}),
            layer("conv2", "conv2d", {{"out_channels", 50}, {"kernel", 5}}),
            layer("pool2", "max_pool2d", {{"kernel", 2}, {"stride", 2}}),
            layer("ip1", "linear", {{"out_features", 500}}), layer("relu1", "relu"),
            layer("ip2", "linear", {{"out_features", 10}})}}};
}

// Caffe's examples/cifar10/cifar10_quick_train_test.prototxt: Caffe pools in ceil mode (32->16->8->4).
json cifar10_quick() {
  auto pool = [](const std::string& name, const std::string& type) {
    return layer(name, type, {{"kernel", 3}, {"stride", 2}, {"ceil_mode", true}});
  };
  auto conv = [](const std::string& name, int out) {
    return layer(name, "conv2d", {{"out_channels", out}, {"kernel", 5}, {"pad", 2}});
  };
  return {{"name", "cifar10_quick"},
          {"input", {3, 32, 32}},
          {"layers",
           {conv("conv1", 32), pool("pool1", "max_pool2d"), layer("relu1", "relu"), conv("conv2", 32),
            layer("relu2", "relu"), pool("pool2", "avg_pool2d"), conv("conv3", 64), layer("relu3", "relu"),
            pool("pool3", "avg_pool2d"), layer("ip1", "linear", {{"out_features", 64}}),
            layer("ip2", "linear", {{"out_features", 10}})}}};
}

// He et al. 2016, section 4.2: 6n+2 layers, three stages of 16/32/64 channels, projection shortcuts (1x1
// conv + BN) where the shape changes. Names: stem conv1/bn1/relu1; block b of stage s is "s<s>b<b>_" +
// conv1, bn1, relu1, conv2, bn2, [down_conv, down_bn], add, relu2; then "pool" and "fc".
json resnet(int n, const std::string& name) {
  json layers = json::array();
  auto conv3x3 = [](const std::string& nm, int out, int stride) {
    return layer(nm, "conv2d", {{"out_channels", out}, {"kernel", 3}, {"stride", stride}, {"pad", 1},
                                {"bias", false}, {"init", "kaiming_normal"}});
  };
  layers.push_back(conv3x3("conv1", 16, 1));
  layers.push_back(layer("bn1", "batchnorm2d"));
  layers.push_back(layer("relu1", "relu"));
  std::string prev = "relu1";
  const int widths[3] = {16, 32, 64};
  for (int s = 0; s < 3; ++s) {
    for (int b = 0; b < n; ++b) {
      // Appended piece by piece: GCC 12's -Wrestrict misreads `"s" + std::to_string(...)` (its bug 105651).
      std::string p = "s";
      p.append(std::to_string(s + 1)).append("b").append(std::to_string(b + 1)).append("_");
      const int stride = (s > 0 && b == 0) ? 2 : 1;
      const std::string block_in = prev;
      layers.push_back(conv3x3(p + "conv1", widths[s], stride));
      layers.push_back(layer(p + "bn1", "batchnorm2d"));
      layers.push_back(layer(p + "relu1", "relu"));
      layers.push_back(conv3x3(p + "conv2", widths[s], 1));
      layers.push_back(layer(p + "bn2", "batchnorm2d"));
      std::string shortcut = block_in;
      if (stride != 1) {
        json down = layer(p + "down_conv", "conv2d", {{"out_channels", widths[s]}, {"kernel", 1}, {"stride", 2},
                                                      {"bias", false}, {"init", "kaiming_normal"}});
        down["inputs"] = {block_in};
        layers.push_back(down);
        layers.push_back(layer(p + "down_bn", "batchnorm2d"));
        shortcut = p + "down_bn";
      }
      json add = layer(p + "add", "add");
      add["inputs"] = {p + "bn2", shortcut};
      layers.push_back(add);
      layers.push_back(layer(p + "relu2", "relu"));
      prev = p + "relu2";
    }
  }
  layers.push_back(layer("pool", "global_avg_pool2d"));
  layers.push_back(layer("fc", "linear", {{"out_features", 10}}));
  return {{"name", name}, {"input", {3, 32, 32}}, {"layers", layers}};
}

// The lecture's fully connected baseline; takes any input (give it with --input or from the data).
json mlp() {
  return {{"name", "mlp"},
          {"layers",
           {layer("flatten", "flatten"), layer("fc1", "linear", {{"out_features", 256}}), layer("relu1", "relu"),
            layer("drop1", "dropout", {{"p", 0.5}}), layer("fc2", "linear", {{"out_features", 10}})}}};
}

const std::map<std::string, json (*)()>& zoo() {
  static const std::map<std::string, json (*)()> table = {
      {"lenet5", lenet5},
      {"cifar10_quick", cifar10_quick},
      {"resnet8", [] { return resnet(1, "resnet8"); }},
      {"resnet20", [] { return resnet(3, "resnet20"); }},
      {"mlp", mlp},
  };
  return table;
}

// Input sizes, like every size in a spec, are at most 2^31 - 1 (framework/core/layer_config.cpp).
constexpr int64_t kMaxInputSize = (int64_t{1} << 31) - 1;

Shape shape_from_json(const json& j, const std::string& where) {
  if (!j.is_array() || j.empty() || j.size() > 3)
    throw ConfigError(where + ": field 'input': expected [C, H, W] or [F], got " + echo(j.dump()));
  Shape s;
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxInputSize ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMaxInputSize)))
      throw ConfigError(where + ": field 'input': expected integers in 1.." + std::to_string(kMaxInputSize) +
                        ", got " + echo(j.dump()));
    s[s.rank++] = v.get<int64_t>();
  }
  s.numel();  // throws ShapeError when C*H*W does not fit in int64
  return s;
}

// Parses spec text: depth-limited first, and any parser exception (syntax, a number out of range such as
// 1e400) becomes a ConfigError naming `where`.
json parse_spec(const std::string& text, const std::string& where) {
  check_json_depth(text, where);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw ConfigError(where + ": invalid JSON: " + echo(e.what()));
  }
}

}  // namespace

std::vector<std::string> zoo_names() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : zoo()) names.push_back(name);
  return names;
}

std::optional<std::string> zoo_spec(const std::string& name) {
  auto it = zoo().find(name);
  if (it == zoo().end()) return std::nullopt;
  return it->second().dump(2) + "\n";
}

ModelSource resolve_model(const std::string& name_or_path) {
  if (auto text = zoo_spec(name_or_path)) return {*text, "model '" + name_or_path + "'"};
  std::error_code ec;
  if (!std::filesystem::exists(name_or_path, ec)) {
    std::string names;
    for (const auto& n : zoo_names()) names += (names.empty() ? "" : ", ") + n;
    throw ConfigError("model '" + echo(name_or_path) + "': not a built-in model (" + names +
                      ") and no spec file of that name exists");
  }
  // A spec is a few kilobytes of text: a device, a directory or a huge file is refused before any read.
  return {read_text_file(name_or_path, "model spec"), name_or_path};
}

std::string spec_with_input(const std::string& spec_text, const Shape& input) {
  json spec = parse_spec(spec_text, "spec");
  json dims = json::array();
  for (int i = 0; i < input.rank; ++i) dims.push_back(input[i]);
  spec["input"] = dims;
  return spec.dump(2) + "\n";
}

Shape parse_input_shape(const std::string& text) {
  Shape s;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != part.size() || v < 1 || v > kMaxInputSize || s.rank == 3)
      throw UsageError("--input: expected C,H,W or F with integers in 1.." + std::to_string(kMaxInputSize) +
                       ", got \"" + echo(text) + "\"");
    s[s.rank++] = v;
  }
  if (s.rank == 0) throw UsageError("--input: expected C,H,W or F, got \"" + echo(text) + "\"");
  return s;
}

Network build_network(const std::string& spec_text, std::optional<Shape> input, const std::string& where) {
  const json spec = parse_spec(spec_text, where);
  if (!spec.is_object()) throw ConfigError(where + ": expected a JSON object with \"layers\"");
  for (const auto& item : spec.items())
    if (item.key() != "name" && item.key() != "input" && item.key() != "layers" && item.key() != "description")
      throw ConfigError(where + ": unknown top-level field '" + echo(item.key()) +
                        "' (expected name, description, input, layers)");
  std::optional<Shape> declared;
  if (spec.contains("input")) declared = shape_from_json(spec["input"], where);
  if (declared && input && *declared != *input)
    throw ShapeError(where + ": the model takes input " + declared->str() + " but the data has " + input->str());
  if (!declared && !input)
    throw ConfigError(where + ": the spec has no \"input\" shape; give one (e.g. --input 1,28,28)");
  if (!spec.contains("layers") || !spec["layers"].is_array() || spec["layers"].empty())
    throw ConfigError(where + ": field 'layers': expected a non-empty array of layer objects");

  Network net(declared ? *declared : *input);
  for (const auto& entry : spec["layers"]) {
    LayerConfig config = LayerConfig::from_json_ptr(&entry, where);
    std::vector<std::string> inputs;
    if (entry.contains("inputs")) {
      if (!entry["inputs"].is_array())
        throw ConfigError(config.context() + "field 'inputs': expected an array of layer names");
      for (const auto& v : entry["inputs"]) {
        if (!v.is_string()) throw ConfigError(config.context() + "field 'inputs': expected layer names");
        inputs.push_back(v.get<std::string>());
      }
    }
    std::unique_ptr<Layer> l = make_layer(config);
    try {
      net.add(std::move(l), inputs);
    } catch (const ShapeError& e) {
      throw ShapeError(where + ": " + e.what());
    } catch (const ConfigError& e) {
      throw ConfigError(where + ": " + e.what());
    }
  }
  net.set_spec_text(spec_text);
  return net;
}

}  // namespace stride
