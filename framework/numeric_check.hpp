#pragma once
// Finding NaN and infinity: a training step that produced one must not update the weights, and the message
// that stops the run says where the value first appeared (framework/training_step, framework/trainer).
#include <span>
#include <string>

#include "framework/network.hpp"

namespace stride {

bool all_finite(std::span<const float> values);

// The first non-finite value of the network in network order, as "the weights of layer 'conv1'
// (conv1/weight)", "the output of layer 'relu1'" or "the gradient of layer 'ip2' (ip2/bias)"; empty when every
// value looked at is finite. Weights are looked at first (they poison every later output), then, layer by
// layer, the last forward's outputs (when `outputs`) and the parameter gradients (when `grads`).
std::string locate_non_finite(const Network& net, bool outputs, bool grads);

// "conv1/weight" (the first parameter, learnable or state, holding a NaN or infinity), or empty.
std::string first_non_finite_param(const Network& net);

}  // namespace stride
