#include "framework/core/layer.hpp"

#include "framework/core/errors.hpp"

namespace stride {

void BinaryLayer::forward(const Tensor&, Tensor&, const RunContext&) {
  throw Error(name() + ": '" + std::string(type()) + "' takes two inputs; call forward2");
}

void BinaryLayer::backward(const Tensor&, const Tensor&, const Tensor&, Tensor*, const RunContext&) {
  throw Error(name() + ": '" + std::string(type()) + "' takes two inputs; call backward2");
}

}  // namespace stride
