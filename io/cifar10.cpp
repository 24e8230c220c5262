#include "io/cifar10.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <memory>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"

namespace stride {
namespace {

constexpr int64_t kSide = 32, kChannels = 3, kPixels = kChannels * kSide * kSide;  // 3072

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace

std::vector<std::string> cifar10_class_names() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

std::vector<std::string> read_class_names_file(const std::string& path) {
  std::vector<std::string> names;
  if (!regular_file_size(path)) return names;
  std::istringstream in(read_text_file(path, "class names file", int64_t{1} << 20));
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

InMemoryDataset read_cifar_files(const std::vector<std::string>& paths, CifarKind kind,
                                 std::vector<std::string> class_names) {
  const int64_t label_bytes = kind == CifarKind::cifar10 ? 1 : 2;
  const int64_t record = label_bytes + kPixels;
  const int64_t class_count = kind == CifarKind::cifar10 ? 10 : 100;
  const char* format = kind == CifarKind::cifar10 ? "CIFAR-10" : "CIFAR-100";
  if (class_names.empty())
    class_names = kind == CifarKind::cifar10 ? cifar10_class_names() : numbered_class_names(class_count);
  if (static_cast<int64_t>(class_names.size()) != class_count)
    throw IoError(std::string(format) + " expects " + std::to_string(class_count) + " class names, got " +
                  std::to_string(class_names.size()) + (paths.empty() ? "" : " for " + paths.front()));

  // Sizes first, so the image buffer is allocated once.
  int64_t total = 0;
  std::vector<int64_t> counts;
  for (const auto& path : paths) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw IoError(path + ": not a regular " + format + " file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw IoError(path + ": cannot read " + format + " file: " + ec.message());
    const auto bytes = static_cast<int64_t>(size);
    if (bytes == 0 || bytes % record != 0)
      throw IoError(path + ": size " + std::to_string(bytes) + " is not a positive multiple of the " +
                    std::to_string(record) + "-byte " + format + " record");
    counts.push_back(bytes / record);
    total += bytes / record;
  }

  // Sizes come from the files, so they are real; whether they fit is --max-memory's to say, with the numbers.
  check_memory(total * (kPixels + 1),
               (paths.empty() ? std::string(format) : paths.front()) + ": " + std::to_string(total) + " " + format +
                   " records in memory");
  std::vector<uint8_t> images(static_cast<size_t>(total * kPixels)), labels(static_cast<size_t>(total));
  // Blocks of records keep the read buffer small while avoiding one fread per record.
  constexpr int64_t kBlock = 256;
  std::vector<uint8_t> buf(static_cast<size_t>(kBlock * record));
  int64_t base = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    const std::string& path = paths[f];
    std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
    if (!file) throw IoError(path + ": cannot open " + format + " file: " + std::strerror(errno));
    for (int64_t r0 = 0; r0 < counts[f]; r0 += kBlock) {
      const int64_t n = std::min(kBlock, counts[f] - r0);
      const size_t want = static_cast<size_t>(n * record);
      const size_t got = std::fread(buf.data(), 1, want, file.get());
      if (got != want)
        throw IoError(path + ": truncated at byte offset " + std::to_string(r0 * record + int64_t(got)) +
                      ": expected " + std::to_string(want) + " bytes, found " + std::to_string(got));
      for (int64_t r = 0; r < n; ++r) {
        const uint8_t* rec = buf.data() + r * record;
        const uint8_t label = rec[label_bytes - 1];  // CIFAR-100: (coarse, fine); keep fine
        if (label >= class_count)
          throw IoError(path + ": record " + std::to_string(r0 + r) + " (byte offset " +
                        std::to_string((r0 + r) * record + label_bytes - 1) + ") has label " + std::to_string(label) +
                        ", expected < " + std::to_string(class_count));
        labels[static_cast<size_t>(base + r0 + r)] = label;
        std::memcpy(images.data() + (base + r0 + r) * kPixels, rec + label_bytes, kPixels);
      }
    }
    base += counts[f];
  }

  DatasetInfo info;
  info.count = total;
  info.channels = kChannels;
  info.height = kSide;
  info.width = kSide;
  info.class_names = std::move(class_names);
  info.source = paths.size() == 1 ? paths.front()
                                  : (paths.empty() ? std::string(format)
                                                   : std::filesystem::path(paths.front()).parent_path().string());
  return InMemoryDataset(std::move(info), std::move(images), std::move(labels));
}

namespace {

void require_files(const std::vector<std::string>& paths, const std::string& what) {
  for (const auto& p : paths)
    if (!std::filesystem::is_regular_file(p)) throw IoError(p + ": missing " + what + " file");
}

}  // namespace

DatasetSplits load_cifar10_dir(const std::string& dir, std::vector<std::string> names) {
  std::vector<std::string> train;
  for (int i = 1; i <= 5; ++i) train.push_back(join_path(dir, "data_batch_" + std::to_string(i) + ".bin"));
  std::vector<std::string> test{join_path(dir, "test_batch.bin")};
  require_files(train, "CIFAR-10 training");
  require_files(test, "CIFAR-10 test");
  if (names.empty()) {
    names = read_class_names_file(join_path(dir, "batches.meta.txt"));
    if (names.size() != 10) names = cifar10_class_names();
  }
  DatasetSplits splits;
  splits.train = std::make_unique<InMemoryDataset>(read_cifar_files(train, CifarKind::cifar10, names));
  splits.test = std::make_unique<InMemoryDataset>(read_cifar_files(test, CifarKind::cifar10, names));
  return splits;
}

DatasetSplits load_cifar100_dir(const std::string& dir, std::vector<std::string> names) {
  std::vector<std::string> train{join_path(dir, "train.bin")}, test{join_path(dir, "test.bin")};
  require_files(train, "CIFAR-100 training");
  require_files(test, "CIFAR-100 test");
  if (names.empty()) {
    names = read_class_names_file(join_path(dir, "fine_label_names.txt"));
    if (names.size() != 100) names.clear();
  }
  DatasetSplits splits;
  splits.train = std::make_unique<InMemoryDataset>(read_cifar_files(train, CifarKind::cifar100, names));
  splits.test = std::make_unique<InMemoryDataset>(read_cifar_files(test, CifarKind::cifar100, names));
  return splits;
}

}  // namespace stride
