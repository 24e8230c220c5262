#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "framework/model_spec.hpp"

namespace stride::app {

namespace {
std::string dims(const Shape& s) {  // per-sample part of a batch-of-one shape: "32x16x16"
  std::string out;
  for (int i = 1; i < s.rank; ++i) {
    if (i > 1) out += 'x';  // appending, not "x" + to_string(): GCC 12 inlines that into a false -Wrestrict
    out += std::to_string(s[i]);
  }
  return out;
}

nlohmann::ordered_json shape_json(const Shape& s) {
  auto out = nlohmann::ordered_json::array();
  for (int i = 0; i < s.rank; ++i) out.push_back(s[i]);
  return out;
}

// One JSON object: what a script needs to check a set of weights against the model (scripts/torch_to_stride.py).
std::string summary_json(const Network& net, const std::string& model) {
  nlohmann::ordered_json j;
  j["model"] = model;
  j["input"] = shape_json(net.input_shape());
  auto params = nlohmann::ordered_json::array();
  for (const auto& e : net.param_entries())
    params.push_back({{"name", e.name},
                      {"shape", shape_json(e.shape)},
                      {"role", e.role == ParamRole::learnable ? "learnable" : "state"}});
  j["params"] = std::move(params);
  j["total_params"] = net.learnable_count();
  j["state_count"] = net.state_count();
  return j.dump();
}
}  // namespace

int summary(int argc, char** argv) {
  po::options_description opts("stride summary options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "zoo name (lenet5, cifar10_quick, resnet8, resnet20, mlp) or spec file")
      ("input,i", po::value<std::string>(), "input shape C,H,W (or F); required when the spec has none")
      ("print-spec", po::bool_switch(), "print the model's spec JSON instead of the table")
      ("json", po::bool_switch(), "print one JSON object (model, input, params with name/shape/role) instead of the table");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride summary --model NAME|SPEC.json [--input C,H,W] [--json | --print-spec]\n"
                     "Prints each layer's output shape, parameter count and forward FLOPs per image, computed\n"
                     "from shapes alone (no parameters are allocated), and a last line 'Total params: N'.\n"
                     "--json prints instead one line {\"model\": the spec's name, \"input\": [C, H, W], \"params\":\n"
                     "[{\"name\": \"conv1/weight\", \"shape\": [20, 1, 5, 5], \"role\": \"learnable\" or \"state\"}, ...],\n"
                     "\"total_params\": N, \"state_count\": M}: the parameters in network order, named as a\n"
                     "checkpoint's /params/<layer>/<param> (docs/checkpoint.md)."))
    return 0;
  ModelSource src = resolve_model(vm["model"].as<std::string>());
  if (vm["print-spec"].as<bool>()) {
    std::cout << src.text;
    return 0;
  }
  std::optional<Shape> input;
  if (vm.count("input")) input = parse_input_shape(vm["input"].as<std::string>());
  Network net = build_network(src.text, input, src.where);
  if (vm["json"].as<bool>()) {
    const auto spec = nlohmann::json::parse(src.text, nullptr, /*allow_exceptions=*/false);
    const bool named = spec.is_object() && spec.contains("name") && spec["name"].is_string();
    std::cout << summary_json(net, named ? spec["name"].get<std::string>() : vm["model"].as<std::string>()) << "\n";
    return 0;
  }

  std::printf("%-20s %-18s %-14s %14s %12s\n", "layer", "type", "output", "params", "FLOPs");
  for (const auto& row : net.summary())
    std::printf("%-20s %-18s %-14s %14lld %12s\n", row.name.c_str(), row.type.c_str(), dims(row.output).c_str(),
                static_cast<long long>(row.params), human_count(row.flops).c_str());
  std::printf("Input: %s per sample\n", net.input_shape().str().c_str());
  std::printf("Forward FLOPs per image: %s\n", human_count(net.forward_flops_per_sample()).c_str());
  std::printf("State (running statistics): %lld\n", static_cast<long long>(net.state_count()));
  std::printf("Total params: %lld\n", static_cast<long long>(net.learnable_count()));
  return 0;
}

}  // namespace stride::app
