#pragma once
// Inverted dropout (PyTorch's nn.Dropout): in training, y = x * mask * 1/(1-p) with mask element e of sample
// n dropped iff RandomStream(seed, layer_purpose(name), epoch, first_sample + n).uniform(e) < p, so a mask is
// a pure function of (seed, epoch, global sample index, layer name, element): never of threads or of how the
// batch is split. In evaluation, the identity.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

struct DropoutOptions {
  double p = 0.5;  // drop probability, 0 <= p < 1
};

class Dropout final : public Layer {
 public:
  Dropout(std::string name, DropoutOptions options);
  // Keys: p (0.5).
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "dropout"; }
  Shape output_shape(const Shape& in) const override;
  double forward_flops(const Shape& in) const override { return static_cast<double>(in.numel()); }
  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  // Applies the mask of the last forward (identity if that forward was in eval mode).
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  const DropoutOptions& options() const { return options_; }

 private:
  DropoutOptions options_;
  uint32_t purpose_;
  bool masked_ = false;      // whether the last forward applied a mask
  std::vector<float> mask_;  // 0 or 1/(1-p) per element of the last training forward
};

}  // namespace stride
