#pragma once
// Moves a network's parameters and an optimizer's slots into and out of a Checkpoint, checking names and
// shapes on the way in so a mismatch is reported precisely instead of loading garbage.
#include <string>

#include "framework/network.hpp"
#include "framework/optimizer.hpp"
#include "io/checkpoint.hpp"

namespace stride {

// Copies every parameter and state buffer into ckpt.params as "<layer>/<param>".
void store_parameters(const Network& net, Checkpoint& ckpt);
// Copies the optimizer's kind, step count and slots into ckpt.optimizer as "<layer>/<param>/<slot>".
void store_optimizer(const Optimizer& opt, const Network& net, Checkpoint& ckpt);

// Loads every parameter of `net` from ckpt (read from `path`); throws IoError naming the missing parameter,
// the shape that differs, or a parameter in the file the model does not have.
void restore_parameters(Network& net, const Checkpoint& ckpt, const std::string& path);
// Loads optimizer slots and step count; throws IoError if the kind or any slot differs.
void restore_optimizer(Optimizer& opt, const Network& net, const Checkpoint& ckpt, const std::string& path);

}  // namespace stride
