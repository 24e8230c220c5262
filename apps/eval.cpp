#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/model_loading.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/evaluation.hpp"
#include "io/detect.hpp"

namespace stride::app {

int eval(int argc, char** argv) {
  std::string weights, data, model, classes, max_memory;
  int64_t batch = 500, limit = 0, threads = 0;
  po::options_description opts("stride eval options");
  opts.add_options()
      ("weights,w", po::value(&weights)->required(), "checkpoint, final.h5 or weights-only file (docs/checkpoint.md)")
      ("data,d", po::value(&data)->required(), "dataset (its test split is evaluated)")
      ("model,m", po::value(&model), "model spec to use instead of the one stored with the weights (needed when the file stores none)")
      ("batch", po::value(&batch)->default_value(batch), "evaluation batch size")
      ("limit", po::value(&limit)->default_value(0), "evaluate only the first N test images")
      ("classes", po::value(&classes), "class names (fashion-mnist or a comma-separated list)")
      ("threads", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("max-memory", po::value(&max_memory), kMaxMemoryHelp)
      ("json", po::bool_switch(), "print one JSON object: accuracy, per_class, confusion, classes");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride eval --weights FILE.h5 --data DIR|FILE.h5 [--json]\n"
                     "Accuracy, per-class accuracy and the confusion matrix on the test split."))
    return 0;
  if (batch < 1) throw UsageError("--batch: expected a value >= 1, got " + std::to_string(batch));
  if (limit < 0) throw UsageError("--limit: expected >= 0, got " + std::to_string(limit));
  std::unique_ptr<ThreadLimit> thread_limit = limit_threads(threads);
  apply_max_memory(max_memory);

  DatasetSplits splits = open_dataset(data);
  const DatasetInfo& info = splits.test->info();
  // An accuracy over no images is not an accuracy: 0/0 must not print and exit 0.
  if (info.count == 0) throw IoError(data + ": the test split is empty; there is nothing to evaluate");
  const int64_t count = limit > 0 ? std::min(limit, info.count) : info.count;
  LoadedModel m = load_model(weights, model.empty() ? std::nullopt : std::optional<std::string>(model),
                             Shape{info.channels, info.height, info.width}, std::min(batch, count),
                             splits.train->resident_bytes() + splits.test->resident_bytes());
  const Shape expected = m.network.input_shape();
  if (expected != Shape{info.channels, info.height, info.width})
    throw ShapeError(data + ": images are " + info.shape_str() + ", the model takes " + expected.str());
  const int64_t k = m.network.output_shape().numel();
  std::vector<std::string> names = !classes.empty() ? parse_class_names(classes)
                                   : m.checkpoint.class_names.size() == static_cast<size_t>(k) ? m.checkpoint.class_names
                                                                                                 : info.class_names;
  if (names.size() != static_cast<size_t>(k)) names = numbered_class_names(k);

  std::unique_ptr<SampleSource> limited;
  if (limit > 0) limited = std::make_unique<PrefixSource>(*splits.test, limit);
  BatchAssembler assembler(limited ? *limited : *splits.test, m.normalization, Augment::none, 0);
  EvalResult r = evaluate(m.network, assembler, batch, k);
  if (!std::isfinite(r.loss))
    std::cerr << "warning: the test loss is " << r.loss << ": the weights or the normalization give NaN or infinity\n";

  std::vector<double> per_class(static_cast<size_t>(k), 0.0);
  for (int64_t t = 0; t < k; ++t) {
    int64_t total = 0;
    for (int64_t p = 0; p < k; ++p) total += r.confusion[static_cast<size_t>(t)][static_cast<size_t>(p)];
    per_class[static_cast<size_t>(t)] =
        total ? static_cast<double>(r.confusion[static_cast<size_t>(t)][static_cast<size_t>(t)]) / static_cast<double>(total) : 0.0;
  }
  if (vm["json"].as<bool>()) {
    nlohmann::json j = {{"accuracy", r.accuracy()}, {"count", r.count}, {"loss", r.loss},
                        {"classes", names},         {"per_class", per_class}, {"confusion", r.confusion}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::printf("accuracy %.4f (%lld/%lld), loss %.4f\n\nper class:\n", r.accuracy(), static_cast<long long>(r.correct),
              static_cast<long long>(r.count), r.loss);
  for (int64_t t = 0; t < k; ++t)
    std::printf("  %-14s %.4f\n", names[static_cast<size_t>(t)].c_str(), per_class[static_cast<size_t>(t)]);
  std::printf("\nconfusion matrix (rows: true class, columns: predicted):\n%-14s", "");
  for (int64_t p = 0; p < k; ++p) std::printf(" %6.6s", names[static_cast<size_t>(p)].c_str());
  std::printf("\n");
  for (int64_t t = 0; t < k; ++t) {
    std::printf("%-14.14s", names[static_cast<size_t>(t)].c_str());
    for (int64_t p = 0; p < k; ++p)
      std::printf(" %6lld", static_cast<long long>(r.confusion[static_cast<size_t>(t)][static_cast<size_t>(p)]));
    std::printf("\n");
  }
  return 0;
}

}  // namespace stride::app
