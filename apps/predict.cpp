#include <algorithm>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/model_loading.hpp"
#include "framework/core/errors.hpp"
#include "io/image.hpp"
#include "layers/softmax_cross_entropy.hpp"

namespace stride::app {

int predict(int argc, char** argv) {
  std::string weights, model, max_memory;
  std::vector<std::string> images;
  int64_t top = 5;
  po::options_description opts("stride predict options");
  opts.add_options()
      ("weights,w", po::value(&weights)->required(), "checkpoint, final.h5 or weights-only file (docs/checkpoint.md)")
      ("image", po::value(&images)->multitoken(), "PNG, PPM or PGM files (also positional)")
      ("model,m", po::value(&model), "model spec to use instead of the one stored with the weights (needed when the file stores none)")
      ("top", po::value(&top)->default_value(top), "how many classes to print per image")
      ("no-resize", po::bool_switch(), "require images of the model's input size instead of resizing them")
      ("max-memory", po::value(&max_memory), kMaxMemoryHelp);
  po::positional_options_description positional;
  positional.add("image", -1);
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride predict --weights FILE.h5 IMAGE...\n"
                     "Prints the top classes with probabilities for each image (converted to the model's channels\n"
                     "and resized bilinearly to its input size unless --no-resize).",
                     &positional))
    return 0;
  if (images.empty()) throw UsageError("predict: no images given");
  if (top < 1) throw UsageError("--top: expected a value >= 1, got " + std::to_string(top));
  apply_max_memory(max_memory);
  LoadedModel m = load_model(weights, model.empty() ? std::nullopt : std::optional<std::string>(model));
  const Shape in = m.network.input_shape();
  if (in.rank != 3) throw ShapeError(weights + ": the model takes " + in.str() + ", not an image");
  const int64_t C = in[0], H = in[1], W = in[2];
  const int64_t k = m.network.output_shape().numel();
  std::vector<std::string> names = m.checkpoint.class_names;
  if (names.size() != static_cast<size_t>(k)) names = numbered_class_names(k);

  Tensor x(Shape{1, C, H, W}), probs;
  for (const auto& path : images) {
    Image img = convert_channels(read_image(path), C);
    if (img.height != H || img.width != W) {
      if (vm["no-resize"].as<bool>())
        throw ShapeError(path + ": image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                         ", the model takes " + std::to_string(W) + "x" + std::to_string(H));
      img = resize_bilinear(img, H, W);
    }
    // As eval's batches and the exported ONNX graph normalize, to the bit.
    for (int64_t c = 0; c < C; ++c) {
      const auto [scale, shift] = pixel_affine(m.normalization, c);
      for (int64_t i = 0; i < H * W; ++i)
        x[c * H * W + i] = static_cast<float>(img.pixels[static_cast<size_t>(c * H * W + i)]) * scale + shift;
    }
    const Tensor& logits = m.network.forward(x, RunContext{Mode::eval, 0, 0, 0});
    softmax(logits, probs);
    std::vector<int64_t> order(static_cast<size_t>(k));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
    std::printf("%s:\n", path.c_str());
    for (int64_t i = 0; i < std::min(top, k); ++i)
      std::printf("  %-16s %.4f\n", names[static_cast<size_t>(order[static_cast<size_t>(i)])].c_str(),
                  probs[order[static_cast<size_t>(i)]]);
  }
  return 0;
}

}  // namespace stride::app
