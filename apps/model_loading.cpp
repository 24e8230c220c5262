#include "apps/model_loading.hpp"

#include "framework/core/errors.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"

namespace stride::app {

LoadedModel load_model(const std::string& weights, const std::optional<std::string>& model_override) {
  Checkpoint ckpt = read_checkpoint(weights);
  Network net = build_network(ckpt.model_spec, std::nullopt, weights + " (stored model spec)");
  if (model_override) {
    ModelSource src = resolve_model(*model_override);
    net = build_network(src.text, net.input_shape(), src.where);
  }
  restore_parameters(net, ckpt, weights);
  if (ckpt.norm_mean.size() != static_cast<size_t>(net.input_shape()[0]) || ckpt.norm_std.size() != ckpt.norm_mean.size())
    throw IoError(weights + ": /normalization holds " + std::to_string(ckpt.norm_mean.size()) +
                  " channels, the model takes " + std::to_string(net.input_shape()[0]));
  Normalization norm{ckpt.norm_mean, ckpt.norm_std};
  return LoadedModel{std::move(ckpt), std::move(net), std::move(norm)};
}

}  // namespace stride::app
