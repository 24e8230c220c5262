// HDF5 checkpoints and weights-only files (io/checkpoint.hpp): any bytes through read_checkpoint (what
// --resume reads) and read_weights (what eval, predict and --init read), then, when the file stores a model
// spec, the model built from it and the weights restored into it, as eval does.
#include "framework/memory_plan.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"
#include "fuzz/fuzz_input.hpp"
#include "io/checkpoint.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stride::fuzz::write_input(data, size, "input-checkpoint.h5");
  stride::fuzz::expect_stride_errors("fuzz_checkpoint", [&] { stride::read_checkpoint(path); });
  stride::fuzz::expect_stride_errors("fuzz_checkpoint", [&] {
    const stride::Checkpoint c = stride::read_weights(path);
    if (c.model_spec.empty()) return;
    stride::Network net = stride::build_network(c.model_spec, std::nullopt, path);
    stride::check_plan(stride::plan_inference(net, 1, 0), "fuzz_checkpoint");
    stride::restore_parameters(net, c, path);
  });
  return 0;
}
