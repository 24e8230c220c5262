// HDF5 datasets in stride's layout (io/hdf5_dataset.hpp): any bytes opened as both splits (as --data FILE.h5
// is), then the first and last images of each read.
#include <algorithm>

#include "fuzz/fuzz_input.hpp"
#include "io/hdf5_dataset.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stride::fuzz::write_input(data, size, "input.h5");
  stride::fuzz::expect_stride_errors("fuzz_hdf5_dataset", [&] {
    const stride::DatasetSplits splits = stride::open_hdf5_dataset(path);
    for (const stride::SampleSource* s : {splits.train.get(), splits.test.get()}) {
      const auto& info = s->info();
      if (info.count == 0) continue;
      const int64_t n = std::min<int64_t>(info.count, 4);
      std::vector<uint8_t> images(static_cast<size_t>(n * info.image_bytes()));
      s->read_images(0, n, images.data());
      s->read_images(info.count - n, n, images.data());
    }
  });
  return 0;
}
