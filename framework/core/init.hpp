#pragma once
// Weight initialization from the counter-based RNG: element e of parameter number p (in network order)
// is a pure function of (seed, p, e), so initialization is identical for any thread or rank count.
#include <cstdint>
#include <span>

#include "framework/core/layer.hpp"

namespace stride {

void init_param(std::span<float> values, const ParamSpec& spec, uint64_t seed, uint32_t param_index);

// Parses "pytorch", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "zeros";
// throws ConfigError listing them otherwise.
Init parse_init(const std::string& name, const std::string& context);

}  // namespace stride
