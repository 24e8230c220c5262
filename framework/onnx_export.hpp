#pragma once
// A trained network as an ONNX model (docs/export.md): standard operators only, from ONNX's own protobuf
// classes (Debian's libonnx-dev), checked with ONNX's checker before anything is written. The graph takes raw
// pixels and applies the training normalization itself, so an image file's pixel values go in unchanged.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/input_pipeline.hpp"
#include "framework/network.hpp"

namespace stride {

struct OnnxExportOptions {
  int64_t batch = 0;     // the input's first dimension: 0 = dynamic (named "N"), else fixed
  int64_t opset = 17;    // of the default domain; 13..17 (Debian's ONNX 1.12 knows up to 17)
  bool softmax = false;  // output "probabilities" (softmax of the logits) instead of "logits"
};

// What the model file says about where it came from (ModelProto.metadata_props, in this order), e.g.
// {"stride_version", "0.1.0"}, {"class_names", "[...]"}, {"run_config", "{...}"}.
using OnnxMetadata = std::vector<std::pair<std::string, std::string>>;

// The ONNX model of `net` (allocated, holding trained parameters) as serialized bytes: one input "image",
// float32 (N, C, H, W) of raw 0-255 pixel values, normalized inside the graph exactly as BatchAssembler does
// (pixel * scale + shift per channel); one output "logits" (N, classes), or "probabilities" with
// options.softmax. Evaluation semantics: batch norm uses the running statistics, dropout is the identity.
// Throws ConfigError naming the layer for a layer with no ONNX form, and for a network whose input is not an
// image; `model_name` names the graph. The model passes onnx::checker::check_model and strict shape
// inference (the Python checker's full_check) before it is returned.
std::string export_onnx(const Network& net, const Normalization& normalization, const OnnxMetadata& metadata,
                        const std::string& model_name, const OnnxExportOptions& options);

// Writes `bytes` to `path` through a temporary file in the same directory renamed over it, so a failed write
// leaves neither a partial file nor a changed one. Throws IoError naming the path.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace stride
