#pragma once
// CIFAR-10 and CIFAR-100 "binary version" readers (https://www.cs.toronto.edu/~kriz/cifar.html).
// A CIFAR-10 record is 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each plane 32x32
// row-major), which is already our CHW layout. A CIFAR-100 record has 2 label bytes (coarse, fine); we keep
// the fine label. The record count comes from the file size, never assumed to be 10000.
#include <string>
#include <vector>

#include "io/dataset.hpp"

namespace stride {

enum class CifarKind { cifar10, cifar100 };

// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
std::vector<std::string> cifar10_class_names();

// Concatenates the records of `paths` in order. Throws IoError naming the file when it is missing, its size
// is not a multiple of the record size, or a label is out of range (with record index and byte offset).
// class_names empty: CIFAR-10's standard names, or "0".."99" for CIFAR-100.
InMemoryDataset read_cifar_files(const std::vector<std::string>& paths, CifarKind kind,
                                 std::vector<std::string> class_names = {});

// dir/data_batch_1..5.bin (train), dir/test_batch.bin (test), class names from dir/batches.meta.txt when
// present (one per line), else the standard names; class_names, when not empty, overrides both.
DatasetSplits load_cifar10_dir(const std::string& dir, std::vector<std::string> class_names = {});

// dir/train.bin, dir/test.bin, fine class names from dir/fine_label_names.txt when present.
DatasetSplits load_cifar100_dir(const std::string& dir, std::vector<std::string> class_names = {});

// Reads one class name per non-empty line; empty when the file does not exist.
std::vector<std::string> read_class_names_file(const std::string& path);

}  // namespace stride
