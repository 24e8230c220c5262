#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/model_loading.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "framework/onnx_export.hpp"

namespace stride::app {

namespace {

// The spec's "name", else "stride_model": the ONNX graph's name.
std::string model_name(const std::string& spec_text) {
  const auto spec = nlohmann::json::parse(spec_text, nullptr, /*allow_exceptions=*/false);
  if (spec.is_object() && spec.contains("name") && spec["name"].is_string() && !spec["name"].get<std::string>().empty())
    return spec["name"].get<std::string>();
  return "stride_model";
}

}  // namespace

int export_model(int argc, char** argv) {
  std::string weights, model, format = "onnx", out, classes;
  OnnxExportOptions options;
  po::options_description opts("stride export options");
  opts.add_options()
      ("weights,w", po::value(&weights)->required(), "checkpoint, final.h5 or weights-only file (docs/checkpoint.md)")
      ("model,m", po::value(&model), "model spec to use instead of the one stored with the weights (needed when the file stores none)")
      ("format", po::value(&format)->default_value(format), "onnx (the only format)")
      ("out,o", po::value(&out)->required(), "the model file to write, e.g. model.onnx")
      ("batch", po::value(&options.batch)->default_value(options.batch), "fixed batch size of the input (0 = dynamic, \"N\")")
      ("opset", po::value(&options.opset)->default_value(options.opset), "ONNX opset of the default domain (13..17)")
      ("softmax", po::bool_switch(&options.softmax), "output \"probabilities\" (softmax) instead of \"logits\"")
      ("classes", po::value(&classes), "class names for the metadata (fashion-mnist or a comma-separated list; default: the file's)");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride export --weights RUN/final.h5 [--model NAME|SPEC.json] --format onnx --out model.onnx\n"
                     "                     [--batch N] [--opset 17] [--softmax]\n"
                     "Writes the trained model as ONNX (standard operators, checked with ONNX's checker). Its input\n"
                     "\"image\" is float32 (N, C, H, W) raw pixel values 0-255, normalized inside the graph as in\n"
                     "training; its output is \"logits\" (N, classes), or \"probabilities\" with --softmax. The run's\n"
                     "config, the class names and stride's version are in the metadata. docs/export.md."))
    return 0;
  if (format != "onnx") throw UsageError("--format: expected onnx, got \"" + echo(format) + "\"");
  if (options.batch < 0) throw UsageError("--batch: expected >= 1, or 0 for a dynamic batch; got " + std::to_string(options.batch));
  if (options.opset < 13 || options.opset > 17)
    throw UsageError("--opset: expected 13..17 (Debian's ONNX 1.12 defines up to 17), got " + std::to_string(options.opset));
  std::error_code ec;
  if (std::filesystem::is_directory(out, ec)) throw UsageError("--out " + out + ": is a directory; give a file name");

  LoadedModel m = load_model(weights, model.empty() ? std::nullopt : std::optional<std::string>(model));
  const int64_t k = m.network.output_shape().numel();
  std::vector<std::string> names = !classes.empty() ? parse_class_names(classes) : m.checkpoint.class_names;
  if (names.size() != static_cast<size_t>(k)) names = numbered_class_names(k);
  const std::string name = model_name(m.network.spec_text());

  OnnxMetadata metadata{
      {"stride_version", STRIDE_VERSION},
      {"model", name},
      {"class_names", nlohmann::json(names).dump()},
      {"input", "image: float32 (N, C, H, W), raw pixel values 0-255; normalized in the graph"},
      {"normalization", nlohmann::json{{"mean", m.normalization.mean}, {"std", m.normalization.stddev}}.dump()},
      {"model_spec", m.network.spec_text()},
      {"run_config", m.checkpoint.run_config.empty() ? "{}" : m.checkpoint.run_config},
      {"trained_steps", std::to_string(m.checkpoint.step)},
  };
  const std::string bytes = export_onnx(m.network, m.normalization, metadata, name, options);
  write_file_atomically(out, bytes);
  const Shape in = m.network.input_shape();
  const std::string batch = options.batch > 0 ? std::to_string(options.batch) : "N";
  std::printf("%s: %s, opset %lld, input image (%s, %lld, %lld, %lld) pixels 0-255, output %s (%s, %lld); %zu bytes\n",
              out.c_str(), name.c_str(), static_cast<long long>(options.opset), batch.c_str(),
              static_cast<long long>(in[0]), static_cast<long long>(in[1]), static_cast<long long>(in[2]),
              options.softmax ? "probabilities" : "logits", batch.c_str(), static_cast<long long>(k), bytes.size());
  return 0;
}

}  // namespace stride::app
