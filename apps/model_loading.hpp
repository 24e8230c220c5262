#pragma once
// Rebuilding a trained model for eval and predict from a checkpoint, final.h5 or a weights-only file
// (docs/checkpoint.md; scripts/torch_to_stride.py writes one from a PyTorch state_dict).
#include <optional>
#include <string>

#include "framework/input_pipeline.hpp"
#include "framework/network.hpp"
#include "io/checkpoint.hpp"

namespace stride::app {

struct LoadedModel {
  Checkpoint checkpoint;  // what read_weights() found: params, and class names when the file has them
  Network network;
  Normalization normalization;
};

// Reads `weights` (read_weights), builds the network from `model_override` when given, else from the file's
// stored spec, and loads every parameter (a missing or wrongly shaped one is an IoError naming it). A file
// without a spec needs `model_override`; a spec without "input" takes `input` (per sample, from the data).
// Without /normalization the input is pixel/255, as PyTorch's ToTensor() gives, and a note says so.
// Before the network's buffers are allocated, the memory of forward passes of `batch` samples (plus
// `data_bytes` already held) is checked against --max-memory; weights holding NaN or infinity are reported
// with a warning.
LoadedModel load_model(const std::string& weights, const std::optional<std::string>& model_override,
                       const std::optional<Shape>& input = std::nullopt, int64_t batch = 1, int64_t data_bytes = 0);

}  // namespace stride::app
