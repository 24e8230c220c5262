#pragma once
// Fully connected layer, y = x W^T + b, with W stored (out, in) as in PyTorch and Caffe. Any input of rank
// >= 2 is read as (N, per_sample), as Caffe's InnerProduct flattens implicitly (cifar10_quick feeds
// (N, 64, 4, 4) straight into ip1).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

struct LinearOptions {
  int64_t out_features = 0;
  bool bias = true;
  Init init = Init::pytorch_default;  // of the weight; the bias always uses PyTorch's default
};

class Linear final : public Layer {
 public:
  Linear(std::string name, LinearOptions options);
  // Keys: out_features (required), bias (true), init ("pytorch").
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "linear"; }
  Shape output_shape(const Shape& in) const override;
  // weight (out, in), then bias (out) when enabled.
  std::vector<ParamSpec> param_specs(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void bind(std::span<const ParamView> params) override;

  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const LinearOptions& options() const { return options_; }

 private:
  void check_input(const Shape& in) const;

  LinearOptions options_;
  int64_t in_features_ = 0;  // known after bind
  ParamView weight_, bias_;
  Tensor wt_;  // (in, out): the weight transposed for a forward pass of more than one row block
  std::vector<float> rows_packed_;  // fp32 passes: the left operand (x or dy) packed once per block of rows
  // bf16 passes: the packed left operand and the right operand as bf16 pairs, rebuilt every pass.
  std::vector<uint32_t> apack_, bpairs_;
  // W^T as pairs over the input features (forward) and W as pairs over the output features (input gradient),
  // with the weight values each was made from: the micro-batches of a step share one weight, so each is made
  // once per step (an exact comparison decides).
  std::vector<uint32_t> wt_pairs_, w_pairs_;
  std::vector<float> wt_pairs_of_, w_pairs_of_;
};

}  // namespace stride
