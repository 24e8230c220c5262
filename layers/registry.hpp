#pragma once
// Maps a spec entry's "type" to the layer class that reads it.
#include <memory>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

// Throws ConfigError naming the layer and listing the known types when the type is unknown.
std::unique_ptr<Layer> make_layer(const LayerConfig& config);
std::vector<std::string> layer_types();

}  // namespace stride
