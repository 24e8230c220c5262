#include "layers/registry.hpp"

#include <functional>
#include <map>

#include "framework/core/errors.hpp"
#include "layers/add.hpp"
#include "layers/avg_pool2d.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/dropout.hpp"
#include "layers/flatten.hpp"
#include "layers/global_avg_pool2d.hpp"
#include "layers/linear.hpp"
#include "layers/lp_pool2d.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/relu.hpp"
#include "layers/sigmoid.hpp"
#include "layers/tanh.hpp"

namespace stride {
namespace {
using Maker = std::function<std::unique_ptr<Layer>(const LayerConfig&)>;

const std::map<std::string, Maker>& makers() {
  static const std::map<std::string, Maker> table = {
      {"conv2d", Conv2d::from_config},
      {"max_pool2d", MaxPool2d::from_config},
      {"avg_pool2d", AvgPool2d::from_config},
      {"lp_pool2d", LpPool2d::from_config},
      {"global_avg_pool2d", GlobalAvgPool2d::from_config},
      {"linear", Linear::from_config},
      {"flatten", Flatten::from_config},
      {"relu", Relu::from_config},
      {"sigmoid", Sigmoid::from_config},
      {"tanh", Tanh::from_config},
      {"dropout", Dropout::from_config},
      {"batchnorm2d", BatchNorm::from_config},
      {"batchnorm1d", BatchNorm::from_config},
      {"add", Add::from_config},
  };
  return table;
}
}  // namespace

std::vector<std::string> layer_types() {
  std::vector<std::string> names;
  for (const auto& [name, maker] : makers()) names.push_back(name);
  return names;
}

std::unique_ptr<Layer> make_layer(const LayerConfig& config) {
  auto it = makers().find(config.type());
  if (it == makers().end()) {
    std::string known;
    for (const auto& t : layer_types()) known += (known.empty() ? "" : ", ") + t;
    throw ConfigError(config.context() + "unknown layer type; known types: " + known);
  }
  return it->second(config);
}

}  // namespace stride
