// CIFAR-10 and CIFAR-100 binary batches (io/cifar10.hpp): any bytes as one batch file of each kind.
#include <algorithm>

#include "fuzz/fuzz_input.hpp"
#include "io/cifar10.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stride::fuzz::write_input(data, size, "data_batch_1.bin");
  for (auto kind : {stride::CifarKind::cifar10, stride::CifarKind::cifar100})
    stride::fuzz::expect_stride_errors("fuzz_cifar", [&] {
      const stride::InMemoryDataset d = stride::read_cifar_files({path}, kind);
      std::vector<uint8_t> image(static_cast<size_t>(d.info().image_bytes()));
      d.read_images(d.info().count - 1, 1, image.data());
    });
  return 0;
}
