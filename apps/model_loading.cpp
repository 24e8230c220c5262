#include "apps/model_loading.hpp"

#include <cmath>
#include <iostream>

#include "framework/core/errors.hpp"
#include "framework/model_spec.hpp"
#include "framework/memory_plan.hpp"
#include "framework/model_state.hpp"
#include "framework/numeric_check.hpp"

namespace stride::app {

LoadedModel load_model(const std::string& weights, const std::optional<std::string>& model_override,
                       const std::optional<Shape>& input, int64_t batch, int64_t data_bytes) {
  Checkpoint ckpt = read_weights(weights);
  std::optional<Network> net;
  if (!ckpt.model_spec.empty()) net = build_network(ckpt.model_spec, std::nullopt, weights + " (stored model spec)");
  if (model_override) {
    ModelSource src = resolve_model(*model_override);
    net = build_network(src.text, net ? std::optional<Shape>(net->input_shape()) : input, src.where);
  }
  if (!net)
    throw UsageError(weights + ": the file stores no model spec (a weights-only file); give --model NAME|SPEC.json");
  check_plan(plan_inference(*net, batch, data_bytes), weights + ": running the model on " + std::to_string(batch) +
                                                        " images");
  if (net->output_shape().numel() > kMaxClasses)
    throw ConfigError(weights + ": the model has " + std::to_string(net->output_shape().numel()) +
                      " outputs; a classifier of more than " + std::to_string(kMaxClasses) + " classes is not supported");
  restore_parameters(*net, ckpt, weights);
  if (const std::string bad = first_non_finite_param(*net); !bad.empty()) {
    int64_t count = 0;
    for (const auto& e : net->param_entries())
      for (float v : net->values_of(e.name)) count += std::isfinite(v) ? 0 : 1;
    std::cerr << "warning: " << weights << ": " << count << " weights are NaN or infinite (the first in /params/"
              << bad << "); the results will be meaningless\n";
  }
  const auto channels = static_cast<size_t>(net->input_shape()[0]);
  Normalization norm{ckpt.norm_mean, ckpt.norm_std};
  if (norm.mean.empty()) {
    norm.mean.assign(channels, 0.0f);
    norm.stddev.assign(channels, 1.0f);
    std::cerr << "note: " << weights << " has no /normalization: the input is pixel/255 (PyTorch's ToTensor)\n";
  }
  if (norm.mean.size() != channels)
    throw IoError(weights + ": /normalization holds " + std::to_string(norm.mean.size()) +
                  " channels, the model takes " + std::to_string(channels));
  return LoadedModel{std::move(ckpt), std::move(*net), std::move(norm)};
}

}  // namespace stride::app
