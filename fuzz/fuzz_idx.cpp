// IDX files, plain and gzip (io/idx.hpp): any bytes as an images file (rank 3) and as a labels file (rank 1),
// and the input as the images of a split whose labels file is a fixed, valid one of 3 labels.
#include "fuzz/fuzz_input.hpp"
#include "io/idx.hpp"

namespace {
std::string labels_file() {
  static const std::string path = [] {
    const uint8_t bytes[] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3};
    return stride::fuzz::write_input(bytes, sizeof bytes, "labels-3");
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stride::fuzz::write_input(data, size, "input-idx");
  stride::fuzz::expect_stride_errors("fuzz_idx", [&] { stride::read_idx(path, 3); });
  stride::fuzz::expect_stride_errors("fuzz_idx", [&] { stride::read_idx(path, 1); });
  stride::fuzz::expect_stride_errors("fuzz_idx", [&] {
    const stride::InMemoryDataset d = stride::read_idx_split(path, labels_file());
    std::vector<uint8_t> image(static_cast<size_t>(d.info().image_bytes()));
    d.read_images(d.info().count - 1, 1, image.data());
  });
  return 0;
}
