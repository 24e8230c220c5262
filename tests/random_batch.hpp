#pragma once
// A batch of random inputs for a network, for the tests that train a few steps and compare runs, not values.
#include <cstdint>
#include <vector>

#include "framework/core/rng.hpp"
#include "framework/core/tensor.hpp"
#include "framework/network.hpp"

namespace stride::test {

struct RandomBatch {
  Tensor x;
  std::vector<int32_t> labels;
};

// `batch` inputs of the network's input shape with N(0, 1) values from the counter-based stream `seed`, and
// labels (i * label_step) % 10.
inline RandomBatch random_batch(const Network& net, int64_t batch, uint64_t seed, int64_t label_step = 1) {
  Shape shape;
  shape.rank = 4;
  shape[0] = batch;
  for (int i = 0; i < 3; ++i) shape[i + 1] = net.input_shape()[i];
  RandomBatch b{Tensor(shape), std::vector<int32_t>(static_cast<size_t>(batch))};
  RandomStream rng(seed, 99u, 0, 0);
  for (int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = rng.normal(static_cast<uint64_t>(i));
  for (int64_t i = 0; i < batch; ++i) b.labels[static_cast<size_t>(i)] = static_cast<int32_t>((i * label_step) % 10);
  return b;
}

}  // namespace stride::test
