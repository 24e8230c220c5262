// PNG, PGM and PPM images (io/image.hpp): any bytes read as an image, then converted to 1 and 3 channels and
// resized to 8x8, as `stride predict` does.
#include "fuzz/fuzz_input.hpp"
#include "io/image.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stride::fuzz::write_input(data, size, "input-image");
  stride::fuzz::expect_stride_errors("fuzz_image", [&] {
    const stride::Image im = stride::read_image(path);
    for (int64_t c : {1, 3}) stride::resize_bilinear(stride::convert_channels(im, c), 8, 8);
  });
  return 0;
}
