// Writes the fuzzers' seed inputs into OUT_DIR/<target>/, made from the real data files: the shared CIFAR-10
// and MNIST samples (../shared/data) and Debian's Fashion-MNIST, cut to a few images each so every seed stays
// small, plus the zoo's specs, docs/specs/*.json and run configs as `stride train` writes them.
// Usage: fuzz_seeds OUT_DIR. Missing data is an error under CI=true (as for the tests), skipped otherwise.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "framework/input_pipeline.hpp"
#include "framework/model_spec.hpp"
#include "framework/model_state.hpp"
#include "framework/optimizer.hpp"
#include "framework/run_config.hpp"
#include "framework/run_setup.hpp"
#include "io/checkpoint.hpp"
#include "io/cifar10.hpp"
#include "io/detect.hpp"
#include "io/hdf5_dataset.hpp"
#include "io/idx.hpp"
#include "io/image.hpp"

namespace fs = std::filesystem;
using namespace stride;

namespace {

fs::path out_dir;
int written = 0;
bool missing_data = false;

fs::path target(const std::string& name) {
  const fs::path d = out_dir / name;
  fs::create_directories(d);
  return d;
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  ++written;
}
void write(const fs::path& path, const std::vector<uint8_t>& bytes) {
  write(path, std::string(bytes.begin(), bytes.end()));
}

std::string gzip(const std::vector<uint8_t>& bytes) {
  const std::string tmp = (out_dir / "tmp.gz").string();
  gzFile f = gzopen(tmp.c_str(), "wb6");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  std::ifstream in(tmp, std::ios::binary);
  std::string s{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  fs::remove(tmp);
  return s;
}

bool have(const fs::path& p) {
  if (fs::exists(p)) return true;
  const char* ci = std::getenv("CI");
  std::fprintf(stderr, "fuzz_seeds: %s is missing%s\n", p.c_str(), ci && std::string(ci) == "true" ? " (CI=true: an error)" : "");
  if (ci && std::string(ci) == "true") missing_data = true;
  return false;
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

// The first n samples of a split, in memory.
InMemoryDataset first(const SampleSource& s, int64_t n) {
  DatasetInfo info = s.info();
  n = std::min(n, info.count);
  info.count = n;
  std::vector<uint8_t> images(static_cast<size_t>(n * info.image_bytes()));
  s.read_images(0, n, images.data());
  std::vector<uint8_t> labels(s.labels().begin(), s.labels().begin() + n);
  return InMemoryDataset(info, std::move(images), std::move(labels));
}

Image image_of(const SampleSource& s, int64_t i) {
  const DatasetInfo& info = s.info();
  Image im(info.channels, info.height, info.width);
  s.read_images(i, 1, im.pixels.data());
  return im;
}

void idx_seeds(const std::string& tag, const DatasetSplits& d) {
  const fs::path dir = target("idx");
  const InMemoryDataset few = first(*d.train, 6);
  const DatasetInfo& info = few.info();
  std::vector<uint8_t> images, labels;
  put_be32(images, 0x803);
  put_be32(images, static_cast<uint32_t>(info.count));
  put_be32(images, static_cast<uint32_t>(info.height));
  put_be32(images, static_cast<uint32_t>(info.width));
  images.insert(images.end(), few.images().begin(), few.images().end());
  put_be32(labels, 0x801);
  put_be32(labels, static_cast<uint32_t>(info.count));
  labels.insert(labels.end(), few.labels().begin(), few.labels().end());
  write(dir / (tag + "-images-6"), images);
  write(dir / (tag + "-images-6.gz"), gzip(images));
  write(dir / (tag + "-labels-6"), labels);
  write(dir / (tag + "-labels-6.gz"), gzip(labels));
  // A labels file of 3 (what the target pairs the input with) and images to match it.
  std::vector<uint8_t> three(images.begin(), images.begin() + 16 + 3 * info.image_bytes());
  three[7] = 3;
  write(dir / (tag + "-images-3.gz"), gzip(three));
}

void hdf5_seeds(const std::string& tag, const DatasetSplits& d) {
  const InMemoryDataset train = first(*d.train, 8), test = first(*d.test, 4);
  for (int level : {0, 4}) {
    Hdf5WriteOptions o;
    o.chunk_images = 4;
    o.deflate_level = level;
    o.source = tag;
    const fs::path p = target("hdf5_dataset") / (tag + "-deflate" + std::to_string(level) + ".h5");
    write_hdf5_dataset(p.string(), train, test, o);
    ++written;
  }
}

void image_seeds(const std::string& tag, const DatasetSplits& d) {
  const fs::path dir = target("image");
  const Image im = image_of(*d.train, 0);
  write_png(im, (dir / (tag + ".png")).string());
  write_pnm(im, (dir / (tag + (im.channels == 1 ? ".pgm" : ".ppm"))).string());
  written += 2;
  if (im.channels == 3) {
    Image rgba(4, im.height, im.width, 255);
    std::copy(im.pixels.begin(), im.pixels.end(), rgba.pixels.begin());
    write_png(rgba, (dir / (tag + "-rgba.png")).string());
    write_png(convert_channels(im, 1), (dir / (tag + "-gray.png")).string());
    written += 2;
  } else {
    // 16-bit PGM (maxval 65535) of the same pixels.
    std::string pgm = "P5\n# 16-bit\n" + std::to_string(im.width) + " " + std::to_string(im.height) + "\n65535\n";
    for (uint8_t p : im.pixels) pgm += std::string{static_cast<char>(p), static_cast<char>(p)};
    write(dir / (tag + "-16bit.pgm"), pgm);
  }
}

// A small trained-shape checkpoint: a conv net on the data's first images, with SGD momentum slots,
// the data's normalization and class names, as `stride train` writes one.
void checkpoint_seeds(const std::string& tag, const DatasetSplits& d, const std::string& spec_text) {
  const InMemoryDataset few = first(*d.train, 16);
  const DatasetInfo& info = few.info();
  Network net = build_network(spec_text, Shape{info.channels, info.height, info.width}, tag);
  net.init(1);
  TrainConfig config;
  config.data = tag;
  auto opt = make_optimizer(config.optimizer, net);
  Checkpoint c;
  c.stride_version = STRIDE_VERSION;
  c.epoch = 1;
  c.step = 3;
  c.seed = 1;
  c.model_spec = spec_with_input(spec_text, net.input_shape());
  ScheduleOptions s = config.schedule;
  s.base_lr = config.lr;
  s.steps_per_epoch = 3;
  s.total_steps = 15;
  c.run_config = run_config_json(config, s, "none", info.count);
  const Normalization norm = compute_normalization(few);
  c.norm_mean = norm.mean;
  c.norm_std = norm.stddev;
  c.class_names = info.class_names;
  c.has_progress = true;
  store_parameters(net, c);
  store_optimizer(*opt, net, c);
  write_checkpoint((target("checkpoint") / (tag + ".h5")).string(), c);
  ++written;
  write(target("run_config") / (tag + "-run_config.json"), c.run_config);
}

const char* kSmallConv = R"({"name": "small", "layers": [
  {"name": "conv1", "type": "conv2d", "out_channels": 4, "kernel": 3, "pad": 1},
  {"name": "bn1", "type": "batchnorm2d"}, {"name": "relu1", "type": "relu"},
  {"name": "pool1", "type": "max_pool2d", "kernel": 2, "stride": 2},
  {"name": "flatten", "type": "flatten"}, {"name": "fc", "type": "linear", "out_features": 10}]})";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  fs::create_directories(out_dir);
  try {
    const fs::path shared = fs::path(STRIDE_REPO_DIR) / ".." / "shared" / "data";
    const fs::path cifar = shared / "cifar10-sample", mnist = shared / "mnist-digits-sample";
    const fs::path fashion = "/usr/share/datasets/fashion-mnist";
    if (have(cifar)) {
      std::ifstream in(cifar / "data_batch_1.bin", std::ios::binary);
      std::vector<uint8_t> records(3 * 3073);
      in.read(reinterpret_cast<char*>(records.data()), static_cast<std::streamsize>(records.size()));
      write(target("cifar") / "cifar10-3records.bin", records);
      // CIFAR-100 layout: a coarse label byte before each record's fine label.
      std::vector<uint8_t> hundred;
      for (int r = 0; r < 2; ++r) {
        hundred.push_back(static_cast<uint8_t>(r + 3));
        hundred.insert(hundred.end(), records.begin() + r * 3073, records.begin() + (r + 1) * 3073);
      }
      write(target("cifar") / "cifar100-2records.bin", hundred);
      const DatasetSplits d = open_dataset(cifar.string());
      hdf5_seeds("cifar10", d);
      image_seeds("cifar10", d);
      checkpoint_seeds("cifar10", d, kSmallConv);
    }
    if (have(mnist)) {
      const DatasetSplits d = open_dataset(mnist.string());
      idx_seeds("mnist", d);
      hdf5_seeds("mnist", d);
      image_seeds("mnist", d);
      checkpoint_seeds("mnist", d, kSmallConv);
    }
    if (have(fashion)) {
      const DatasetSplits d = open_dataset(fashion.string(), fashion_mnist_class_names());
      idx_seeds("fashion", d);
    }
    for (const auto& name : zoo_names()) write(target("model_spec") / (name + ".json"), *zoo_spec(name));
    write(target("model_spec") / "small.json", std::string(kSmallConv));
    for (const auto& e : fs::directory_iterator(fs::path(STRIDE_REPO_DIR) / "docs" / "specs")) {
      std::ifstream in(e.path(), std::ios::binary);
      write(target("model_spec") / e.path().filename(),
            std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()});
    }
    write(target("run_config") / "train.ini",
          std::string("# hyperparameters\nlr = 0.05\nbatch = 40\noptimizer = adam\nseed = 11\nmilestones = 2,4\n"
                      "schedule = multistep\naugment = crop-flip\nthreads = 2\nmax-memory = 8G\n"));
    // Command lines: the first byte picks the command (0 summary, 1 train, 2 eval, 3 predict, 4 convert,
    // 5 bench), NUL bytes separate the arguments.
    auto line = [](char command, const std::vector<std::string>& args) {
      std::string out(1, command);
      for (size_t i = 0; i < args.size(); ++i) out += (i ? std::string(1, '\0') : std::string()) + args[i];
      return out;
    };
    const std::vector<std::string> lines = {
        line(0, {"--model", "lenet5", "--json"}),
        line(0, {"--model", "mlp", "--input", "3,32,32"}),
        line(1, {"--model", "cifar10_quick", "--data", "d", "--epochs", "3", "--batch", "64", "--lr", "0.01",
                 "--schedule", "multistep", "--milestones", "1,2", "--threads", "2", "--on-nan", "skip-batch",
                 "--max-memory", "4G"}),
        line(1, {"--resume", "run", "--overwrite", "--config", "run.ini"}),
        line(2, {"--weights", "final.h5", "--data", "d.h5", "--json", "--limit", "10"}),
        line(3, {"--weights", "final.h5", "--top", "3", "a.png", "b.pgm"}),
        line(4, {"--from", "idx", "src", "--out", "x.h5", "--classes", "fashion-mnist"}),
        line(5, {"--model", "lenet5", "--batch", "2", "--steps", "1", "--per-layer"}),
    };
    for (size_t i = 0; i < lines.size(); ++i) write(target("cli") / ("args-" + std::to_string(i)), lines[i]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  std::printf("fuzz_seeds: wrote %d seed files under %s\n", written, out_dir.c_str());
  return missing_data ? 1 : 0;
}
