#pragma once
// The stride HDF5 dataset layout (docs/data.md):
//   /train/images  (N, C, H, W) uint8, chunked along N + deflate
//   /train/labels  (N,) uint8
//   /test/images, /test/labels    the same
//   attributes on "/": class_names (variable-length string array), source (string),
//                      format = "stride-dataset", version = 1
// Users may bring their own files in this layout (h5py shows how, scripts/h5py_dataset_demo.py).
#include <cstdint>
#include <memory>
#include <string>

#include "io/dataset.hpp"

namespace stride {

struct Hdf5WriteOptions {
  int64_t chunk_images = 256;  // images per chunk: one chunk of CIFAR is 768 KiB
  int deflate_level = 4;       // 0 turns compression off; 1 writes CIFAR ~15% faster, files ~1-7% larger
  std::string source;          // the "source" attribute; empty: train.info().source
};

// Writes both splits to `path` atomically: a temp file in the same directory, renamed at the end, removed on
// any failure. Train and test must have the same C, H, W; class names come from train. Throws IoError naming
// the file.
void write_hdf5_dataset(const std::string& path, const SampleSource& train, const SampleSource& test,
                        const Hdf5WriteOptions& options = {});

// One split ("train" or "test") of a file in the layout, opened read-only. Labels are loaded at open; images
// are read by hyperslab on demand (no full load). Opening validates the layout and throws IoError naming the
// file and the dataset path (missing dataset, wrong rank, wrong dtype, count mismatch, label out of range).
// images may also be rank 3 (N, H, W) for C = 1; labels may be any integer type.
class Hdf5Source : public SampleSource {
 public:
  // Checks the whole file's structure first (h5::check_structure), then opens the split.
  Hdf5Source(const std::string& path, const std::string& split);
  // Opens the split of a file whose structure check_file() has already passed (both splits share one check).
  struct StructureChecked {};
  Hdf5Source(const std::string& path, const std::string& split, StructureChecked);
  // Throws IoError unless `path` is a regular file that passes h5::check_structure.
  static void check_file(const std::string& path);
  ~Hdf5Source() override;
  Hdf5Source(const Hdf5Source&) = delete;
  Hdf5Source& operator=(const Hdf5Source&) = delete;

  const DatasetInfo& info() const override { return info_; }
  const std::vector<uint8_t>& labels() const override { return labels_; }
  void read_images(int64_t first, int64_t count, uint8_t* out) const override;
  // The labels and the 64 MiB chunk cache.
  int64_t resident_bytes() const override { return static_cast<int64_t>(labels_.size()) + (int64_t{64} << 20); }

 private:
  struct Handles;
  std::unique_ptr<Handles> h_;
  DatasetInfo info_;
  std::vector<uint8_t> labels_;
  std::string images_path_;  // "file.h5:/train/images", for messages
};

// Both splits of an HDF5 dataset file.
DatasetSplits open_hdf5_dataset(const std::string& path);

// Opens `src` with open_dataset (a CIFAR-10/IDX directory or an HDF5 file) and writes it to `out`.
// class_names overrides the reader's names (e.g. fashion_mnist_class_names()).
void convert_dataset(const std::string& src, const std::string& out, const std::vector<std::string>& class_names = {},
                     const Hdf5WriteOptions& options = {});

}  // namespace stride
