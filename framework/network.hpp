#pragma once
// A network: a graph of named layers in execution order (a sequence, plus residual adds that name their two
// inputs). The network owns every parameter in three flat buffers — learnable values, their gradients, and
// state such as batch-norm running statistics — and binds views of them into the layers, so the optimizer is
// one loop, a checkpoint is a few datasets and a gradient allreduce is one call.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/tensor.hpp"

namespace stride {

// One parameter as the outside world sees it: "<layer>/<param>", its shape, and where it lives in the flat
// buffer of its role (params() for learnable, state() for state).
struct ParamEntry {
  std::string name;
  Shape shape;
  ParamRole role = ParamRole::learnable;
  int64_t offset = 0;
  int64_t size = 0;
  bool weight_decay = true;
  ParamSpec spec;  // the layer's full description (init, fans)
};

// One row of `stride summary`.
struct LayerSummary {
  std::string name, type;
  Shape output;  // for a batch of one
  int64_t params = 0;
  double flops = 0;  // forward, batch of one
};

class Network {
 public:
  // An empty network for inputs of shape (C, H, W) (or (F) for feature vectors); add layers with add().
  explicit Network(Shape input_per_sample);
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;
  ~Network();

  // Appends a layer fed by the named nodes ("input" is the network input); no names means "the previous
  // layer". Shapes are inferred at once, so a wrong shape throws here, naming the layer.
  void add(std::unique_ptr<Layer> layer, std::vector<std::string> inputs = {});

  const Shape& input_shape() const { return input_; }   // per sample
  Shape output_shape() const;                            // per sample
  const std::vector<LayerSummary>& summary() const { return summary_; }
  const std::vector<ParamEntry>& param_entries() const { return entries_; }
  int64_t learnable_count() const { return learnable_count_; }
  int64_t state_count() const { return state_count_; }
  double forward_flops_per_sample() const;
  // The spec text this network was built from (empty when built in C++).
  const std::string& spec_text() const { return spec_text_; }
  void set_spec_text(std::string text) { spec_text_ = std::move(text); }
  size_t layer_count() const { return nodes_.size(); }
  Layer& layer(size_t i);
  const Layer& layer(size_t i) const;
  Layer* find_layer(const std::string& name);
  // The nodes feeding layer i, in input order (-1 = the network input), and layer i's output of the last
  // forward (empty before one): for tools that run layers one by one (stride bench --per-layer) and for
  // finding where a NaN first appeared.
  const std::vector<int>& layer_inputs(size_t i) const;
  const Tensor& layer_output(size_t i) const;

  // Allocates the flat buffers and binds every layer to them. Until then the network only describes itself,
  // so summarizing a model with billions of parameters costs nothing.
  void allocate();
  bool allocated() const { return allocated_; }
  // Fills every parameter from the counter-based RNG keyed by (seed, parameter index, element).
  void init(uint64_t seed);

  std::span<float> params() { return params_.span(); }
  std::span<float> grads() { return grads_.span(); }
  std::span<float> state() { return state_.span(); }
  std::span<const float> params() const { return params_.span(); }
  std::span<const float> grads() const { return grads_.span(); }
  std::span<const float> state() const { return state_.span(); }
  // Values of one parameter by its full name; throws Error for an unknown name.
  std::span<float> values_of(const std::string& full_name);
  std::span<const float> values_of(const std::string& full_name) const;
  const ParamEntry& entry(const std::string& full_name) const;

  void zero_grad();
  // x: (N, input...) -> logits. Returns a reference to the last layer's output, valid until the next call.
  const Tensor& forward(const Tensor& x, const RunContext& ctx);
  // dlogits = dL/dlogits for the last forward, whose input x must still be alive; ACCUMULATES parameter gradients into grads().
  void backward(const Tensor& dlogits, const RunContext& ctx);
  // The same, calling after_layer(from) after every layer: the gradients [from, learnable_count()) are final
  // (backward runs the layers last to first, so `from` only decreases). Lets gradients be sent while the
  // earlier layers still run.
  void backward(const Tensor& dlogits, const RunContext& ctx, const std::function<void(int64_t)>& after_layer);

 private:
  struct Node;
  int find_node(const std::string& name) const;  // -1 = network input
  Shape node_shape(int index) const;

  Shape input_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<LayerSummary> summary_;
  std::vector<ParamEntry> entries_;
  int64_t learnable_count_ = 0, state_count_ = 0;
  Tensor params_, grads_, state_;  // flat, 64-byte aligned
  std::string spec_text_;
  bool allocated_ = false;
  Tensor scratch_;                      // gradient of a node consumed twice, before it is added
  const Tensor* last_input_ = nullptr;  // input of the last forward, for the first layer's backward
};

}  // namespace stride
