#include "framework/onnx_export.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <span>
#include <sstream>

#include "framework/core/errors.hpp"
#include "layers/avg_pool2d.hpp"
#include "layers/batchnorm.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/lp_pool2d.hpp"
#include "layers/max_pool2d.hpp"

namespace stride {

namespace {

// Appends initializers and nodes to one GraphProto. Tensor names: "image" (the input), "<layer>/<param>"
// for parameters, "<layer>" for a layer's output and "<layer>/<step>" for the steps inside one layer; a name
// already taken (a layer called "logits" or "normalize", say) gets a suffix, so every tensor has one producer.
// Every function returns the name it actually used.
class GraphBuilder {
 public:
  // `reserved`: names only the caller gives out (the graph's input and output).
  GraphBuilder(onnx::GraphProto& graph, std::set<std::string> reserved) : graph_(graph), used_(std::move(reserved)) {}

  std::string fresh(const std::string& wanted) {
    std::string name = wanted;
    for (int k = 1; !used_.insert(name).second; ++k) name = wanted + "_" + std::to_string(k);
    return name;
  }

  // A float32 initializer of shape `dims`; returns its name.
  std::string floats(const std::string& name, const std::vector<int64_t>& dims, std::span<const float> values) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(fresh(name));
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    // raw_data is little-endian float32, which is this machine's layout.
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size_bytes()));
    return t->name();
  }
  std::string scalar(const std::string& name, float value) { return floats(name, {}, std::span<const float>(&value, 1)); }
  // A one-dimensional int64 initializer (Pad's pads, Slice's starts and ends).
  std::string ints(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(fresh(name));
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
    return t->name();
  }

  // A node of the default domain with one output, named fresh(output) (the node takes the same name);
  // exact_output: `output` as it is (a reserved name).
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                        bool exact_output = false) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op);
    n->add_output(exact_output ? output : fresh(output));
    n->set_name(n->output(0));
    for (const auto& in : inputs) n->add_input(in);
    return *n;
  }

 private:
  onnx::GraphProto& graph_;
  std::set<std::string> used_;
};

void set_ints(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}
void set_int(onnx::NodeProto& n, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}
void set_float(onnx::NodeProto& n, const std::string& name, float value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}
void set_string(onnx::NodeProto& n, const std::string& name, const std::string& value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(value);
}

// One layer's place in the graph: the layer, its input tensors' names and its input shape (batch 1).
struct LayerSite {
  const Network& net;
  const Layer& layer;
  std::vector<std::string> inputs;
  Shape in;
  std::string where() const { return "layer '" + layer.name() + "' (" + std::string(layer.type()) + ")"; }
  std::span<const float> param(const std::string& p) const { return net.values_of(layer.name() + "/" + p); }
};

// x (N, C, H, W) extended by rows above and below and columns left and right, in Pad's `mode` (constant:
// zeros, reflect, edge).
std::string pad(GraphBuilder& b, const std::string& name, const std::string& x, const std::string& mode,
                int64_t top, int64_t left, int64_t bottom, int64_t right) {
  onnx::NodeProto& n = b.node("Pad", {x, b.ints(name + "/pads", {0, 0, top, left, 0, 0, bottom, right})}, name);
  set_string(n, "mode", mode);
  return n.output(0);
}

// Circular padding, which Pad lacks until opset 19's "wrap": the last `p` rows (columns) are put above (left
// of) the image and the first `p` below (right of) it, one axis after the other, as torch's circular pad does.
std::string circular_pad(GraphBuilder& b, const std::string& name, std::string x, const Shape& in, int64_t ph,
                         int64_t pw) {
  const int64_t sizes[2] = {in[2], in[3]}, pads[2] = {ph, pw};
  for (int axis = 2; axis <= 3; ++axis) {
    const int64_t n = sizes[axis - 2], p = pads[axis - 2];
    if (p == 0) continue;
    const std::string stem = name + (axis == 2 ? "/wrap_rows" : "/wrap_cols");
    const std::string axes = b.ints(stem + "/axes", {axis});
    const std::string tail = b.node("Slice", {x, b.ints(stem + "/tail_starts", {n - p}), b.ints(stem + "/tail_ends", {n}), axes},
                                    stem + "/tail").output(0);
    const std::string head = b.node("Slice", {x, b.ints(stem + "/head_starts", {0}), b.ints(stem + "/head_ends", {p}), axes},
                                    stem + "/head").output(0);
    onnx::NodeProto& cat = b.node("Concat", {tail, x, head}, stem);
    set_int(cat, "axis", axis);
    x = cat.output(0);
  }
  return x;
}

std::string export_conv(GraphBuilder& b, const LayerSite& s, const Conv2d& conv) {
  const Conv2dOptions& o = conv.options();
  const std::string& name = s.layer.name();
  std::string x = s.inputs[0];
  std::vector<int64_t> conv_pads{0, 0, 0, 0};
  switch (o.padding) {
    case Padding::valid:
      break;
    case Padding::zeros:
      conv_pads = {o.pad_h, o.pad_w, o.pad_h, o.pad_w};
      break;
    case Padding::reflect:
      if (o.pad_h || o.pad_w) x = pad(b, name + "/pad", x, "reflect", o.pad_h, o.pad_w, o.pad_h, o.pad_w);
      break;
    case Padding::replicate:
      if (o.pad_h || o.pad_w) x = pad(b, name + "/pad", x, "edge", o.pad_h, o.pad_w, o.pad_h, o.pad_w);
      break;
    case Padding::circular:
      x = circular_pad(b, name, x, s.in, o.pad_h, o.pad_w);
      break;
  }
  const int64_t in_channels = s.in[1];
  std::vector<std::string> inputs{
      x, b.floats(name + "/weight", {o.out_channels, in_channels, o.kernel_h, o.kernel_w}, s.param("weight"))};
  if (o.bias) inputs.push_back(b.floats(name + "/bias", {o.out_channels}, s.param("bias")));
  onnx::NodeProto& n = b.node("Conv", inputs, name);
  set_ints(n, "kernel_shape", {o.kernel_h, o.kernel_w});
  set_ints(n, "strides", {o.stride_h, o.stride_w});
  set_ints(n, "dilations", {o.dilation_h, o.dilation_w});
  set_ints(n, "pads", conv_pads);
  set_int(n, "group", 1);
  return n.output(0);
}

// The pooling window geometry in ONNX terms. stride's (PyTorch's) ceil mode lets the last window hang past
// the bottom/right padding, but never start in it; ONNX's ceil_mode rule differs between versions and
// runtimes. So ceil mode is never used: the bottom/right padding is extended to exactly what the last window
// needs, and floor mode then gives stride's output size. The extension is always less than the kernel.
struct PoolPads {
  int64_t top, left, bottom, right;
  Pool2dGeometry g;
};
PoolPads pool_pads(const LayerSite& s, const Pool2dOptions& o) {
  const Pool2dGeometry g = pool2d_geometry(s.layer.name(), o, s.in);
  const int64_t bottom = std::max(g.pad_h, (g.P - 1) * g.stride_h + g.R - g.H - g.pad_h);
  const int64_t right = std::max(g.pad_w, (g.Q - 1) * g.stride_w + g.S - g.W - g.pad_w);
  return {g.pad_h, g.pad_w, bottom, right, g};
}

void set_window(onnx::NodeProto& n, const Pool2dGeometry& g) {
  set_ints(n, "kernel_shape", {g.R, g.S});
  set_ints(n, "strides", {g.stride_h, g.stride_w});
}

std::string export_max_pool(GraphBuilder& b, const LayerSite& s, const MaxPool2d& pool) {
  const PoolPads p = pool_pads(s, pool.options());
  // MaxPool's padding is never chosen (as -infinity), as in torch.
  onnx::NodeProto& n = b.node("MaxPool", {s.inputs[0]}, s.layer.name());
  set_window(n, p.g);
  set_ints(n, "pads", {p.top, p.left, p.bottom, p.right});
  return n.output(0);
}

// Window sums scaled by `numerator / divisor(p, q)`, into `output`: AveragePool over the zero-padded input
// (every window inside it, so ONNX divides by R*S everywhere, whatever its count_include_pad rules) times a
// constant table (R*S * numerator / divisor), left out where it is all ones. `divisor` is stride's: the window
// clipped to the padded extent with count_include_pad, else its real elements.
std::string window_sums(GraphBuilder& b, const std::string& name, const std::string& x, const PoolPads& p,
                        bool count_include_pad, double numerator, const std::string& output) {
  const Pool2dGeometry& g = p.g;
  std::vector<float> table(static_cast<size_t>(g.P * g.Q));
  bool ones = true;
  for (int64_t r = 0; r < g.P; ++r) {
    const PoolSpan hs = pool_span(r, g.R, g.stride_h, g.pad_h, g.H);
    for (int64_t q = 0; q < g.Q; ++q) {
      const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
      const int64_t d = count_include_pad ? hs.padded * ws.padded : (hs.end - hs.begin) * (ws.end - ws.begin);
      const float t = static_cast<float>(static_cast<double>(g.R * g.S) * numerator / static_cast<double>(d));
      table[static_cast<size_t>(r * g.Q + q)] = t;
      ones = ones && t == 1.0f;
    }
  }
  std::string padded = x;
  if (p.top || p.left || p.bottom || p.right)
    padded = pad(b, name + "/pad", x, "constant", p.top, p.left, p.bottom, p.right);
  onnx::NodeProto& avg = b.node("AveragePool", {padded}, ones ? output : name + "/avg");
  set_window(avg, g);
  if (ones) return avg.output(0);
  const std::string sums = avg.output(0);
  return b.node("Mul", {sums, b.floats(name + "/scale", {1, 1, g.P, g.Q}, table)}, output).output(0);
}

std::string export_avg_pool(GraphBuilder& b, const LayerSite& s, const AvgPool2d& pool) {
  const PoolPads p = pool_pads(s, pool.options());
  return window_sums(b, s.layer.name(), s.inputs[0], p, pool.options().count_include_pad, 1.0, s.layer.name());
}

// v^e into `output`, as stride's lp_pool2d computes it: a product for 2, a square root for 1/2, else Pow.
std::string power(GraphBuilder& b, const std::string& output, const std::string& x, float e) {
  if (e == 1.0f) return b.node("Identity", {x}, output).output(0);
  if (e == 2.0f) return b.node("Mul", {x, x}, output).output(0);
  if (e == 0.5f) return b.node("Sqrt", {x}, output).output(0);
  return b.node("Pow", {x, b.scalar(output + "/exponent", e)}, output).output(0);
}

// (sum of x^p over the window / divisor * R*S)^(1/p), the divisor counting the padding (lp_pool2d.hpp).
std::string export_lp_pool(GraphBuilder& b, const LayerSite& s, const LpPool2d& pool) {
  const Pool2dOptions& o = pool.options();
  const PoolPads p = pool_pads(s, o);
  const auto exponent = static_cast<float>(o.p);
  const auto root = static_cast<float>(1.0 / o.p);
  const std::string& name = s.layer.name();
  const std::string powered = power(b, name + "/power", s.inputs[0], exponent);
  const std::string sums = window_sums(b, name, powered, p, true, static_cast<double>(p.g.R * p.g.S), name + "/sum");
  return power(b, name, sums, root);
}

std::string export_linear(GraphBuilder& b, const LayerSite& s, const Linear& linear) {
  const std::string& name = s.layer.name();
  std::string x = s.inputs[0];
  // stride's linear reads any (N, ...) input as (N, features), as Caffe's InnerProduct; Gemm needs 2-D.
  if (s.in.rank > 2) {
    onnx::NodeProto& flat = b.node("Flatten", {s.inputs[0]}, name + "/flatten");
    set_int(flat, "axis", 1);
    x = flat.output(0);
  }
  const int64_t in_features = s.in.per_sample();
  const int64_t out = linear.options().out_features;
  std::vector<std::string> inputs{x, b.floats(name + "/weight", {out, in_features}, s.param("weight"))};
  if (linear.options().bias) inputs.push_back(b.floats(name + "/bias", {out}, s.param("bias")));
  onnx::NodeProto& n = b.node("Gemm", inputs, name);
  set_int(n, "transB", 1);
  return n.output(0);
}

// Inference form: the running statistics; without affine, scale 1 and shift 0.
std::string export_batchnorm(GraphBuilder& b, const LayerSite& s, const BatchNorm& bn) {
  const std::string& name = s.layer.name();
  const int64_t c = s.in[1];
  std::vector<std::string> inputs{s.inputs[0]};
  if (bn.options().affine) {
    inputs.push_back(b.floats(name + "/weight", {c}, s.param("weight")));
    inputs.push_back(b.floats(name + "/bias", {c}, s.param("bias")));
  } else {
    const std::vector<float> ones(static_cast<size_t>(c), 1.0f), zeros(static_cast<size_t>(c), 0.0f);
    inputs.push_back(b.floats(name + "/weight", {c}, ones));
    inputs.push_back(b.floats(name + "/bias", {c}, zeros));
  }
  inputs.push_back(b.floats(name + "/running_mean", {c}, s.param("running_mean")));
  inputs.push_back(b.floats(name + "/running_var", {c}, s.param("running_var")));
  onnx::NodeProto& n = b.node("BatchNormalization", inputs, name);
  set_float(n, "epsilon", static_cast<float>(bn.options().eps));
  return n.output(0);
}

// The output tensor of one layer; throws ConfigError naming a layer that has no ONNX form.
std::string export_layer(GraphBuilder& b, const LayerSite& s) {
  const std::string type(s.layer.type());
  const std::string& name = s.layer.name();
  if (type == "conv2d") return export_conv(b, s, dynamic_cast<const Conv2d&>(s.layer));
  if (type == "max_pool2d") return export_max_pool(b, s, dynamic_cast<const MaxPool2d&>(s.layer));
  if (type == "avg_pool2d") return export_avg_pool(b, s, dynamic_cast<const AvgPool2d&>(s.layer));
  if (type == "lp_pool2d") return export_lp_pool(b, s, dynamic_cast<const LpPool2d&>(s.layer));
  if (type == "linear") return export_linear(b, s, dynamic_cast<const Linear&>(s.layer));
  if (type == "batchnorm2d" || type == "batchnorm1d")
    return export_batchnorm(b, s, dynamic_cast<const BatchNorm&>(s.layer));
  if (type == "global_avg_pool2d") return b.node("GlobalAveragePool", {s.inputs[0]}, name).output(0);
  if (type == "relu") return b.node("Relu", {s.inputs[0]}, name).output(0);
  if (type == "sigmoid") return b.node("Sigmoid", {s.inputs[0]}, name).output(0);
  if (type == "tanh") return b.node("Tanh", {s.inputs[0]}, name).output(0);
  if (type == "add") return b.node("Add", {s.inputs[0], s.inputs[1]}, name).output(0);
  if (type == "flatten") {
    onnx::NodeProto& n = b.node("Flatten", {s.inputs[0]}, name);
    set_int(n, "axis", 1);
    return n.output(0);
  }
  if (type == "dropout") return s.inputs[0];  // the identity in evaluation
  throw ConfigError(s.where() + ": no ONNX export for layer type '" + type +
                    "'; the model cannot be exported (docs/export.md lists the layers that can)");
}

onnx::ValueInfoProto* add_tensor_info(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list,
                                      const std::string& name, const std::vector<int64_t>& dims, int64_t batch) {
  onnx::ValueInfoProto* v = list->Add();
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  if (batch > 0)
    shape->add_dim()->set_dim_value(batch);
  else
    shape->add_dim()->set_dim_param("N");
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
  return v;
}

// check_model, then strict shape inference with type checks on a copy: ONNX's Python full_check.
void full_check(const onnx::ModelProto& model) {
  onnx::checker::check_model(model);
  onnx::ModelProto inferred = model;
  onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                     onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1));
}

}  // namespace

std::string export_onnx(const Network& net, const Normalization& normalization, const OnnxMetadata& metadata,
                        const std::string& model_name, const OnnxExportOptions& options) {
  if (options.opset < 13 || options.opset > 17)
    throw ConfigError("ONNX export: opset " + std::to_string(options.opset) + " is not one of 13..17");
  if (options.batch < 0) throw ConfigError("ONNX export: batch " + std::to_string(options.batch) + " is negative");
  const Shape in = net.input_shape();
  if (in.rank != 3)
    throw ConfigError(model_name + ": the model takes " + in.str() +
                      ", not images (C, H, W); only image models are exported, with the input \"image\"");
  if (!net.allocated()) throw Error(model_name + ": export needs a network holding its weights");
  const int64_t C = in[0];
  if (static_cast<int64_t>(normalization.mean.size()) != C || static_cast<int64_t>(normalization.stddev.size()) != C)
    throw ConfigError(model_name + ": the normalization has " + std::to_string(normalization.mean.size()) +
                      " channels, the model takes " + std::to_string(C));

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("stride");
  model.set_producer_version(STRIDE_VERSION);
  model.set_doc_string("Exported by stride " STRIDE_VERSION ". Input \"image\": float32 (N, C, H, W) raw pixel "
                       "values 0-255; the training normalization is part of the graph.");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  for (const auto& [key, value] : metadata) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  }
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name(model_name);
  const std::string output = options.softmax ? "probabilities" : "logits";
  GraphBuilder b(graph, {"image", output});
  add_tensor_info(graph.mutable_input(), "image", {in[0], in[1], in[2]}, options.batch);

  // x = pixel * scale + shift per channel: BatchAssembler's two float roundings, in its order.
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const PixelAffine a = pixel_affine(normalization, c);
    scale[static_cast<size_t>(c)] = a.scale;
    shift[static_cast<size_t>(c)] = a.shift;
  }
  const std::string scaled =
      b.node("Mul", {"image", b.floats("normalize/scale", {1, C, 1, 1}, scale)}, "normalize/scaled").output(0);
  const std::string input =
      b.node("Add", {scaled, b.floats("normalize/shift", {1, C, 1, 1}, shift)}, "normalize").output(0);

  // Layers in the network's execution order; shapes for a batch of one.
  std::vector<std::string> outputs(net.layer_count());
  std::vector<Shape> shapes(net.layer_count());
  const Shape in1{1, in[0], in[1], in[2]};
  for (size_t i = 0; i < net.layer_count(); ++i) {
    const Layer& layer = net.layer(i);
    LayerSite site{net, layer, {}, {}};
    for (int from : net.layer_inputs(i)) {
      site.inputs.push_back(from < 0 ? input : outputs[static_cast<size_t>(from)]);
      if (site.inputs.size() == 1) site.in = from < 0 ? in1 : shapes[static_cast<size_t>(from)];
    }
    outputs[i] = export_layer(b, site);
    shapes[i] = layer.output_shape(site.in);
  }

  // The classifier's output as (N, classes), whatever shape the last layer gives it.
  const Shape& last = shapes.back();
  const int64_t classes = last.per_sample();
  std::string y = outputs.back();
  if (last.rank != 2) {
    onnx::NodeProto& flat = b.node("Flatten", {y}, "output/flatten");
    set_int(flat, "axis", 1);
    y = flat.output(0);
  }
  if (options.softmax)
    set_int(b.node("Softmax", {y}, output, /*exact_output=*/true), "axis", 1);
  else
    b.node("Identity", {y}, output, /*exact_output=*/true);
  add_tensor_info(graph.mutable_output(), output, {classes}, options.batch);

  try {
    full_check(model);
  } catch (const std::exception& e) {
    // A graph the checker refuses is a bug here, never the user's; it is not written.
    throw Error(model_name + ": the exported graph fails ONNX's checker (a stride bug): " + std::string(e.what()));
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error(model_name + ": the ONNX model could not be serialized");
  return bytes;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.filename().empty()) throw IoError(path + ": not a file name");
  const fs::path tmp = target.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(path + ": cannot create " + tmp.string() + ": " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      const std::string reason = std::strerror(errno);
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      throw IoError(path + ": writing failed: " + reason);
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw IoError(path + ": cannot rename the written file into place: " + ec.message());
  }
}

}  // namespace stride
