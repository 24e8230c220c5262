#pragma once
// IDX files (MNIST, Fashion-MNIST; http://yann.lecun.com/exdb/mnist/), plain or gzip-compressed. Gzip is
// detected by the magic bytes 1f 8b, not by the name. Header: 4-byte big-endian magic 0x000008NN (0x08 = uint8
// elements, NN = rank), NN big-endian uint32 dims, then the elements row-major.
#include <cstdint>
#include <string>
#include <vector>

#include "io/dataset.hpp"

namespace stride {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads a uint8 IDX file of the given rank (3 for images, 1 for labels). Throws IoError naming the file and
// the field or byte offset: bad magic, zero dims, truncated payload (expected vs found bytes), trailing bytes.
IdxArray read_idx(const std::string& path, int rank);

// "0".."9".
std::vector<std::string> digit_class_names();
// Fashion-MNIST's classes: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
std::vector<std::string> fashion_mnist_class_names();

// One split from an images file (rank 3: N, H, W -> C = 1) and a labels file (rank 1: N). Checks that the
// counts agree and every label is < class_names.size() (default: digits).
InMemoryDataset read_idx_split(const std::string& images_path, const std::string& labels_path,
                               std::vector<std::string> class_names = {});

// Finds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and
// t10k-labels-idx1-ubyte[.gz] in dir (the plain name wins when both exist). Missing file -> IoError naming it.
DatasetSplits load_idx_dir(const std::string& dir, std::vector<std::string> class_names = {});

// The path of dir/stem or dir/stem.gz, whichever exists (plain first); empty when neither does.
std::string find_idx_file(const std::string& dir, const std::string& stem);

}  // namespace stride
