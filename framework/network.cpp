#include "framework/network.hpp"

#include <algorithm>

#include "framework/core/errors.hpp"
#include "framework/core/init.hpp"
#include "framework/core/limits.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/trace.hpp"

namespace stride {

struct Network::Node {
  std::unique_ptr<Layer> layer;
  std::vector<int> inputs;  // node indices; -1 = network input
  Shape out_shape;          // per batch of one
  std::vector<size_t> param_entries;  // indices into entries_, in param_specs order
  Tensor y;                 // output of the last forward
  Tensor dy;                // dL/dy accumulated during backward
  bool has_grad = false;
};

Network::Network(Shape input_per_sample) : input_(input_per_sample) {
  if (input_.rank < 1 || input_.rank > 3)
    throw ShapeError("network: input must be (C, H, W) or (F), got " + input_.str());
  for (int i = 0; i < input_.rank; ++i)
    if (input_[i] < 1) throw ShapeError("network: input sizes must be >= 1, got " + input_.str());
}

Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;
Network::~Network() = default;

int Network::find_node(const std::string& name) const {
  if (name == "input") return -1;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->layer->name() == name) return static_cast<int>(i);
  return -2;
}

// Shape of node `index` (or the input, -1) for a batch of one.
Shape Network::node_shape(int index) const {
  if (index >= 0) return nodes_[static_cast<size_t>(index)]->out_shape;
  Shape s;
  s.rank = input_.rank + 1;
  s[0] = 1;
  for (int i = 0; i < input_.rank; ++i) s[i + 1] = input_[i];
  return s;
}

void Network::add(std::unique_ptr<Layer> layer, std::vector<std::string> inputs) {
  if (allocated_) throw Error("network: cannot add layer '" + layer->name() + "' after allocate()");
  const std::string& name = layer->name();
  if (name == "input" || find_node(name) != -2)
    throw ConfigError("network: duplicate layer name '" + echo(name) + "'");
  if (inputs.empty()) inputs.push_back(nodes_.empty() ? "input" : nodes_.back()->layer->name());
  if (static_cast<int>(inputs.size()) != layer->input_count())
    throw ConfigError("network: layer '" + echo(name) + "' (" + std::string(layer->type()) + ") takes " +
                      std::to_string(layer->input_count()) + " input(s), got " + std::to_string(inputs.size()));
  auto node = std::make_unique<Node>();
  for (const auto& in : inputs) {
    int idx = find_node(in);
    if (idx == -2)
      throw ConfigError("network: layer '" + echo(name) + "' takes input '" + echo(in) +
                        "', which is not an earlier layer (or \"input\")");
    node->inputs.push_back(idx);
  }
  const Shape in_shape = node_shape(node->inputs[0]);
  if (auto* binary = dynamic_cast<BinaryLayer*>(layer.get()))
    binary->check_inputs(in_shape, node_shape(node->inputs[1]));
  node->out_shape = layer->output_shape(in_shape);

  LayerSummary row{name, std::string(layer->type()), node->out_shape, 0, layer->forward_flops(in_shape)};
  for (ParamSpec& spec : layer->param_specs(in_shape)) {
    ParamEntry e;
    e.name = name + "/" + spec.name;
    e.shape = spec.shape;
    e.role = spec.role;
    e.size = spec.shape.numel();
    e.weight_decay = spec.weight_decay;
    int64_t& count = spec.role == ParamRole::learnable ? learnable_count_ : state_count_;
    const auto total = add_sizes(count, e.size);
    if (!total)
      throw ShapeError("network: layer '" + echo(name) + "': the model's parameter count overflows int64");
    e.offset = count;
    count = *total;
    if (spec.role == ParamRole::learnable) row.params += e.size;
    e.spec = std::move(spec);
    node->param_entries.push_back(entries_.size());
    entries_.push_back(std::move(e));
  }
  summary_.push_back(row);
  node->layer = std::move(layer);
  nodes_.push_back(std::move(node));
}

Shape Network::output_shape() const {
  if (nodes_.empty()) return input_;
  Shape s;
  const Shape& o = nodes_.back()->out_shape;
  s.rank = o.rank - 1;
  for (int i = 1; i < o.rank; ++i) s[i - 1] = o[i];
  return s;
}

double Network::forward_flops_per_sample() const {
  double f = 0;
  for (const auto& row : summary_) f += row.flops;
  return f;
}

Layer& Network::layer(size_t i) { return *nodes_.at(i)->layer; }
const Layer& Network::layer(size_t i) const { return *nodes_.at(i)->layer; }

const std::vector<int>& Network::layer_inputs(size_t i) const { return nodes_.at(i)->inputs; }

const Tensor& Network::layer_output(size_t i) const { return nodes_.at(i)->y; }

Layer* Network::find_layer(const std::string& name) {
  int idx = find_node(name);
  return idx >= 0 ? nodes_[static_cast<size_t>(idx)]->layer.get() : nullptr;
}

void Network::allocate() {
  if (allocated_) return;
  params_.resize(Shape{learnable_count_});
  grads_.resize(Shape{learnable_count_});
  state_.resize(Shape{state_count_});
  for (auto& node : nodes_) {
    std::vector<ParamView> views;
    for (size_t e : node->param_entries) {
      const ParamEntry& p = entries_[e];
      const auto off = static_cast<size_t>(p.offset), n = static_cast<size_t>(p.size);
      if (p.role == ParamRole::learnable)
        views.push_back({params_.span().subspan(off, n), grads_.span().subspan(off, n)});
      else
        views.push_back({state_.span().subspan(off, n), {}});
    }
    node->layer->bind(views);
  }
  allocated_ = true;
}

void Network::init(uint64_t seed) {
  allocate();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const ParamEntry& p = entries_[i];
    auto buffer = p.role == ParamRole::learnable ? params_.span() : state_.span();
    init_param(buffer.subspan(static_cast<size_t>(p.offset), static_cast<size_t>(p.size)), p.spec, seed,
               static_cast<uint32_t>(i));
  }
  zero_grad();
}

const ParamEntry& Network::entry(const std::string& full_name) const {
  for (const auto& e : entries_)
    if (e.name == full_name) return e;
  throw Error("network: no parameter named '" + full_name + "'");
}

std::span<float> Network::values_of(const std::string& full_name) {
  const ParamEntry& e = entry(full_name);
  auto buffer = e.role == ParamRole::learnable ? params_.span() : state_.span();
  return buffer.subspan(static_cast<size_t>(e.offset), static_cast<size_t>(e.size));
}

std::span<const float> Network::values_of(const std::string& full_name) const {
  return const_cast<Network*>(this)->values_of(full_name);
}

void Network::zero_grad() {
  // Once per micro-batch, over every gradient (1.7 MB for lenet5): split over the threads like the rest of
  // the step.
  const trace::ScopeGuard scope("step", "zero_grad");
  float* g = grads_.data();
  parallel_for(grads_.numel(), int64_t{1} << 16, [g](int64_t begin, int64_t end) { std::fill(g + begin, g + end, 0.0f); });
}

const Tensor& Network::forward(const Tensor& x, const RunContext& ctx) {
  if (!allocated_) throw Error("network: forward() before allocate()/init()");
  if (nodes_.empty()) throw Error("network: forward() on a network without layers");
  Shape expected = node_shape(-1).with_batch(x.shape()[0]);
  if (x.shape() != expected)
    throw ShapeError("network: expected input " + expected.str() + ", got " + x.shape().str());
  last_input_ = &x;
  auto input_of = [&](int idx) -> const Tensor& { return idx < 0 ? x : nodes_[static_cast<size_t>(idx)]->y; };
  for (auto& node : nodes_) {
    const trace::ScopeGuard scope(node->layer->name(), "forward");
    if (auto* binary = dynamic_cast<BinaryLayer*>(node->layer.get()))
      binary->forward2(input_of(node->inputs[0]), input_of(node->inputs[1]), node->y, ctx);
    else
      node->layer->forward(input_of(node->inputs[0]), node->y, ctx);
  }
  return nodes_.back()->y;
}

void Network::backward(const Tensor& dlogits, const RunContext& ctx) { backward(dlogits, ctx, nullptr); }

void Network::backward(const Tensor& dlogits, const RunContext& ctx, const std::function<void(int64_t)>& after_layer) {
  if (!last_input_) throw Error("network: backward() without a forward()");
  check_shape("network", "output gradient", nodes_.back()->y.shape(), dlogits.shape());
  for (auto& node : nodes_) node->has_grad = false;
  nodes_.back()->dy = dlogits;
  nodes_.back()->has_grad = true;

  // Where the gradient for input node `idx` goes: straight into its dy the first time, else into scratch_
  // and then added, in this fixed order, so a node consumed twice (a residual branch) is deterministic.
  auto target = [&](int idx) -> Tensor* {
    if (idx < 0) return nullptr;  // no gradient for the network input
    Node& in = *nodes_[static_cast<size_t>(idx)];
    return in.has_grad ? &scratch_ : &in.dy;
  };
  auto commit = [&](int idx) {
    if (idx < 0) return;
    Node& in = *nodes_[static_cast<size_t>(idx)];
    if (in.has_grad) {
      float* d = in.dy.data();
      const float* s = scratch_.data();
      parallel_for(in.dy.numel(), 16384, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] += s[i];  // element-wise: the same for any split
      });
    }
    in.has_grad = true;
  };
  auto input_of = [&](int idx) -> const Tensor& {
    return idx < 0 ? *last_input_ : nodes_[static_cast<size_t>(idx)]->y;
  };

  int64_t from = learnable_count_;  // gradients [from, end) are final
  for (size_t k = nodes_.size(); k-- > 0;) {
    Node& node = *nodes_[k];
    if (!node.has_grad) continue;  // output not used by anything downstream of the loss
    const trace::ScopeGuard scope(node.layer->name(), "backward");
    if (auto* binary = dynamic_cast<BinaryLayer*>(node.layer.get())) {
      const int a = node.inputs[0], b = node.inputs[1];
      Tensor* da = target(a);
      binary->backward2(node.dy, da, nullptr, ctx);
      commit(a);
      Tensor* db = target(b);
      binary->backward2(node.dy, nullptr, db, ctx);
      commit(b);
    } else {
      const int a = node.inputs[0];
      Tensor* dx = target(a);
      node.layer->backward(input_of(a), node.y, node.dy, dx, ctx);
      commit(a);
    }
    if (after_layer) {
      for (size_t e : node.param_entries)
        if (entries_[e].role == ParamRole::learnable) from = std::min(from, entries_[e].offset);
      after_layer(from);
    }
  }
}

}  // namespace stride
