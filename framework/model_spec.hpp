#pragma once
// Model spec files (JSON, documented in docs/model-spec.md) and the built-in model zoo.
#include <optional>
#include <string>
#include <vector>

#include "framework/network.hpp"

namespace stride {

// Builds a network from spec text. `input` (C, H, W) overrides a spec without "input" and must agree with a
// spec that has one. `where` names the source in error messages (a file path or "model 'lenet5'").
Network build_network(const std::string& spec_text, std::optional<Shape> input = std::nullopt,
                      const std::string& where = "spec");

struct ModelSource {
  std::string text;   // the spec JSON
  std::string where;  // for messages
};

// A zoo name (lenet5, cifar10_quick, resnet8, resnet20, mlp) or the path of a spec file. Throws ConfigError
// listing the zoo when it is neither.
ModelSource resolve_model(const std::string& name_or_path);

// The spec text with its "input" set to `input` (what a checkpoint stores, so a model trained with an
// input-agnostic spec such as mlp can be rebuilt without the data).
std::string spec_with_input(const std::string& spec_text, const Shape& input);

std::vector<std::string> zoo_names();
// The spec text of a zoo model, or nullopt.
std::optional<std::string> zoo_spec(const std::string& name);

// Parses "C,H,W" (or "F") into a per-sample shape; throws ConfigError otherwise.
Shape parse_input_shape(const std::string& text);

}  // namespace stride
