// Model spec files (framework/model_spec.hpp): any bytes as spec text, built for a 1x8x8 input when the spec
// has none; a network whose memory plan and FLOPs are small is then initialized and run forward and backward
// on two samples, so layer options that pass validation but break a kernel are found too.
#include "framework/memory_plan.hpp"
#include "framework/model_spec.hpp"
#include "fuzz/fuzz_input.hpp"
#include "layers/softmax_cross_entropy.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::set_memory_limit(int64_t{32} << 20);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  stride::fuzz::expect_stride_errors("fuzz_model_spec", [&] {
    stride::Network net = stride::build_network(text, std::nullopt, "fuzz.json");
    (void)net;
  });
  stride::fuzz::expect_stride_errors("fuzz_model_spec", [&] {
    stride::Network net = stride::build_network(text, stride::Shape{1, 8, 8}, "fuzz.json");
    stride::spec_with_input(text, net.input_shape());
    if (net.forward_flops_per_sample() > 2e6) return;
    stride::check_plan(stride::plan_training(net, 2, 1, 0), "fuzz_model_spec");
    net.init(1);
    stride::Shape in = net.input_shape(), batch;
    batch.rank = in.rank + 1;
    batch[0] = 2;
    for (int i = 0; i < in.rank; ++i) batch[i + 1] = in[i];
    stride::Tensor x(batch, 0.5f), dlogits;
    for (int64_t i = 0; i < x.numel(); i += 3) x[i] = -1.0f;
    const stride::RunContext ctx{stride::Mode::train, 1, 0, 0};
    const stride::Tensor& logits = net.forward(x, ctx);
    const int64_t k = logits.shape().per_sample();
    const std::vector<int32_t> labels{0, static_cast<int32_t>(k > 1 ? 1 : 0)};
    stride::softmax_cross_entropy(logits, labels, &dlogits);
    net.backward(dlogits, ctx);
  });
  return 0;
}
