#include "io/detect.hpp"

#include <filesystem>

#include "framework/core/errors.hpp"
#include "io/cifar10.hpp"
#include "io/hdf5_dataset.hpp"
#include "io/idx.hpp"

namespace stride {

namespace fs = std::filesystem;

const char* format_name(DatasetFormat f) {
  switch (f) {
    case DatasetFormat::cifar10:
      return "cifar10";
    case DatasetFormat::cifar100:
      return "cifar100";
    case DatasetFormat::idx:
      return "idx";
    case DatasetFormat::hdf5:
      return "hdf5";
  }
  return "?";
}

DatasetFormat detect_dataset_format(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "data_batch_1.bin", ec)) return DatasetFormat::cifar10;
    if (!find_idx_file(path, "train-images-idx3-ubyte").empty()) return DatasetFormat::idx;
    if (fs::is_regular_file(p / "train.bin", ec) && fs::is_regular_file(p / "test.bin", ec))
      return DatasetFormat::cifar100;
    throw IoError(path +
                  ": not a dataset directory: looked for data_batch_1.bin (CIFAR-10 binary), "
                  "train-images-idx3-ubyte[.gz] (IDX: MNIST, Fashion-MNIST) and train.bin + test.bin "
                  "(CIFAR-100 binary)");
  }
  const std::string ext = p.extension().string();
  if (ext == ".h5" || ext == ".hdf5") {
    if (!fs::exists(p, ec)) throw IoError(path + ": no such HDF5 file");
    return DatasetFormat::hdf5;
  }
  if (!fs::exists(p, ec)) throw IoError(path + ": no such file or directory");
  throw IoError(path +
                ": unknown dataset: expected a directory of CIFAR-10/CIFAR-100 binaries or IDX files, or "
                "an HDF5 file ending in .h5 or .hdf5");
}

namespace {

DatasetSplits open_splits(const std::string& path, const std::vector<std::string>& class_names) {
  switch (detect_dataset_format(path)) {
    case DatasetFormat::cifar10:
      return load_cifar10_dir(path, class_names);
    case DatasetFormat::cifar100:
      return load_cifar100_dir(path, class_names);
    case DatasetFormat::idx:
      return load_idx_dir(path, class_names);
    case DatasetFormat::hdf5:
      return open_hdf5_dataset(path);
  }
  throw IoError(path + ": unknown dataset format");
}

}  // namespace

DatasetSplits open_dataset(const std::string& path, const std::vector<std::string>& class_names) {
  DatasetSplits s = open_splits(path, class_names);
  // At load, not after an epoch of training: a test split of other images cannot be evaluated.
  const DatasetInfo &tr = s.train->info(), &te = s.test->info();
  if (tr.channels != te.channels || tr.height != te.height || tr.width != te.width)
    throw IoError(path + ": the test images " + te.shape_str() + " (" + te.source + ") differ from the training images " +
                  tr.shape_str() + " (" + tr.source + ") in C, H or W");
  return s;
}

}  // namespace stride
