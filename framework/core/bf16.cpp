#include "framework/core/bf16.hpp"

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride {

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(const std::string& name, const std::string& what) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw ConfigError(what + ": expected fp32 or bf16, got '" + echo(name) + "'");
}

}  // namespace stride
