#pragma once
// The layer contract. A layer is a small class with explicit forward and backward passes; the network owns
// every parameter in flat buffers and hands each layer views into them (bind), so the optimizer, the
// checkpoint writer and the gradient allreduce each see one contiguous array.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "framework/core/bf16.hpp"
#include "framework/core/shape.hpp"
#include "framework/core/tensor.hpp"

namespace stride {

enum class Mode { train, eval };

// Everything a pass needs besides tensors. Dropout keys its mask by (seed, epoch, first_sample + n).
struct RunContext {
  Mode mode = Mode::eval;
  uint64_t seed = 0;
  uint32_t epoch = 0;
  int64_t first_sample = 0;  // global index of sample 0 of this batch within the epoch
  // bf16: convolutions and linear layers round their inputs and weights to bf16 and sum in fp32
  // (framework/core/bf16.hpp); every other layer, the loss and the optimizer stay fp32.
  Precision precision = Precision::fp32;
};

enum class ParamRole {
  learnable,  // updated by the optimizer, has a gradient
  state,      // carried but not learned (batch-norm running statistics)
};

// How the network fills a parameter before training (see framework/init.hpp).
enum class Init {
  zeros,
  ones,
  pytorch_default,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Conv2d/Linear weights and biases
  kaiming_uniform,  // He et al., gain sqrt(2): U(-sqrt(6/fan_in), sqrt(6/fan_in))
  kaiming_normal,   // N(0, 2/fan_in)
  xavier_uniform,   // Glorot: U(-sqrt(6/(fan_in+fan_out)), ...)
  xavier_normal,    // N(0, 2/(fan_in+fan_out))
};

struct ParamSpec {
  std::string name;  // "weight", "bias", "running_mean", ...; addressed as "<layer>/<name>"
  Shape shape;
  ParamRole role = ParamRole::learnable;
  Init init = Init::zeros;
  int64_t fan_in = 0, fan_out = 0;
  bool weight_decay = true;  // false for biases and batch-norm scale/shift (optimizers may honour it)
};

// A parameter as the layer sees it: its values, and its gradient (empty for state).
struct ParamView {
  std::span<float> value;
  std::span<float> grad;
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const std::string& name() const { return name_; }
  virtual std::string_view type() const = 0;
  // 1 for every layer but the residual add (2), whose two-input passes live in BinaryLayer.
  virtual int input_count() const { return 1; }

  // Output shape for an input shape (the first input's, for a binary layer). Throws ShapeError naming
  // this layer and the offending shape. Needs no allocated parameters.
  virtual Shape output_shape(const Shape& in) const = 0;
  // The parameters this layer needs for that input shape, in a fixed order. Needs no allocation, so a
  // summary of a three-billion-parameter model is instant.
  virtual std::vector<ParamSpec> param_specs(const Shape& /*in*/) const { return {}; }
  // Multiply-adds count as 2 FLOPs; per whole batch of `in`.
  virtual double forward_flops(const Shape& /*in*/) const { return 0.0; }
  // Receives views into the network's buffers, one per param_specs() entry, same order.
  virtual void bind(std::span<const ParamView> /*params*/) {}

  // y is resized to output_shape(x.shape()) and overwritten.
  virtual void forward(const Tensor& x, Tensor& y, const RunContext& ctx) = 0;
  // Given x, y and dy = dL/dy from the last forward: dx (skipped when null) is resized and OVERWRITTEN
  // with dL/dx; parameter gradients are ACCUMULATED (+=) into the bound grad views.
  virtual void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) = 0;

 private:
  std::string name_;
};

// A layer with two inputs of the same shape (the residual add). The network calls the two-input passes.
class BinaryLayer : public Layer {
 public:
  using Layer::Layer;
  int input_count() const override { return 2; }
  // Throws ShapeError unless the two input shapes fit together.
  virtual void check_inputs(const Shape& a, const Shape& b) const = 0;
  virtual void forward2(const Tensor& a, const Tensor& b, Tensor& y, const RunContext& ctx) = 0;
  // da and db (each skipped when null) are overwritten.
  virtual void backward2(const Tensor& dy, Tensor* da, Tensor* db, const RunContext& ctx) = 0;

  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) final;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) final;
};

}  // namespace stride
