#include "framework/core/init.hpp"

#include <cmath>
#include <string>

#include "framework/core/errors.hpp"
#include "framework/core/rng.hpp"

namespace stride {

void init_param(std::span<float> values, const ParamSpec& spec, uint64_t seed, uint32_t param_index) {
  const RandomStream rng(seed, Purpose::init, param_index, 0);
  const double fan_in = static_cast<double>(std::max<int64_t>(spec.fan_in, 1));
  const double fan_sum = static_cast<double>(std::max<int64_t>(spec.fan_in + spec.fan_out, 1));
  auto fill_uniform = [&](double bound) {
    for (size_t i = 0; i < values.size(); ++i) values[i] = rng.uniform(i, static_cast<float>(-bound), static_cast<float>(bound));
  };
  auto fill_normal = [&](double stddev) {
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(stddev) * rng.normal(i);
  };
  switch (spec.init) {
    case Init::zeros: std::fill(values.begin(), values.end(), 0.0f); break;
    case Init::ones: std::fill(values.begin(), values.end(), 1.0f); break;
    case Init::pytorch_default: fill_uniform(1.0 / std::sqrt(fan_in)); break;
    case Init::kaiming_uniform: fill_uniform(std::sqrt(6.0 / fan_in)); break;
    case Init::kaiming_normal: fill_normal(std::sqrt(2.0 / fan_in)); break;
    case Init::xavier_uniform: fill_uniform(std::sqrt(6.0 / fan_sum)); break;
    case Init::xavier_normal: fill_normal(std::sqrt(2.0 / fan_sum)); break;
  }
}

Init parse_init(const std::string& name, const std::string& context) {
  if (name == "pytorch") return Init::pytorch_default;
  if (name == "kaiming_uniform") return Init::kaiming_uniform;
  if (name == "kaiming_normal") return Init::kaiming_normal;
  if (name == "xavier_uniform") return Init::xavier_uniform;
  if (name == "xavier_normal") return Init::xavier_normal;
  if (name == "zeros") return Init::zeros;
  throw ConfigError(context + "init: expected one of pytorch, kaiming_uniform, kaiming_normal, xavier_uniform, "
                    "xavier_normal, zeros, got \"" + name + "\"");
}

}  // namespace stride
