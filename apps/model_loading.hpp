#pragma once
// Rebuilding a trained model from a checkpoint (or final.h5) for eval and predict.
#include <optional>
#include <string>

#include "framework/input_pipeline.hpp"
#include "framework/network.hpp"
#include "io/checkpoint.hpp"

namespace stride::app {

struct LoadedModel {
  Checkpoint checkpoint;
  Network network;
  Normalization normalization;
};

// Reads `weights`, builds the network from its stored spec (or from `model_override` when given, which must
// then have the same parameters) and loads every parameter.
LoadedModel load_model(const std::string& weights, const std::optional<std::string>& model_override);

}  // namespace stride::app
