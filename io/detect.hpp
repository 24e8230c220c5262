#pragma once
// Opens a dataset from a path without being told its format: `stride train --data DIR|FILE.h5`.
#include <string>
#include <vector>

#include "io/dataset.hpp"

namespace stride {

enum class DatasetFormat { cifar10, cifar100, idx, hdf5 };

// cifar10: DIR/data_batch_1.bin; cifar100: DIR/train.bin + DIR/test.bin; idx: DIR/train-images-idx3-ubyte[.gz];
// hdf5: a file ending in .h5 or .hdf5. Anything else -> IoError listing what was looked for.
DatasetFormat detect_dataset_format(const std::string& path);
const char* format_name(DatasetFormat f);

// Detects the format and opens both splits. class_names, when not empty, names the classes of formats that
// carry no names of their own (IDX, CIFAR), e.g. fashion_mnist_class_names(); HDF5 files keep their own.
DatasetSplits open_dataset(const std::string& path, const std::vector<std::string>& class_names = {});

}  // namespace stride
