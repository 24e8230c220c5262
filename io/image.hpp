#pragma once
// Single images for `stride predict` and for tests: PNG (libpng) and binary PGM (P5) / PPM (P6), decoded to
// uint8 planar CHW.
#include <cstdint>
#include <string>
#include <vector>

namespace stride {

struct Image {
  int64_t channels = 0, height = 0, width = 0;  // channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;                  // CHW planar, channels * height * width bytes

  Image() = default;
  Image(int64_t c, int64_t h, int64_t w, uint8_t fill = 0)
      : channels(c), height(h), width(w), pixels(static_cast<size_t>(c * h * w), fill) {}
  uint8_t& at(int64_t c, int64_t y, int64_t x) { return pixels[static_cast<size_t>((c * height + y) * width + x)]; }
  uint8_t at(int64_t c, int64_t y, int64_t x) const {
    return pixels[static_cast<size_t>((c * height + y) * width + x)];
  }
};

// Reads PNG, PGM or PPM, chosen by the file's first bytes (not its name). Throws IoError naming the file and
// what is wrong (not an image we read, truncated, unsupported maxval).
Image read_image(const std::string& path);

// Any PNG: gray, gray+alpha, RGB, RGBA, palette (-> RGB, or RGBA with a tRNS chunk), 1/2/4/8/16 bit. 16-bit
// samples are scaled to 8 bits with rounding (v * 255 / 65535); gamma is left alone.
Image read_png(const std::string& path);
// Binary P5 (gray) or P6 (RGB); maxval 1..65535, rescaled to 0..255 with rounding.
Image read_pnm(const std::string& path);

// Writes 8-bit PNG with 1-4 channels.
void write_png(const Image& image, const std::string& path);
// Writes P5 for 1 channel, P6 for 3 channels, maxval 255.
void write_pnm(const Image& image, const std::string& path);

// To 1 channel (gray: ITU-R BT.601 luma (19595 R + 38470 G + 7471 B + 2^15) >> 16, PIL's convert("L")) or
// 3 channels (RGB: gray copied to each channel). Alpha is dropped (not composited), as PIL's convert("RGB").
Image convert_channels(const Image& image, int64_t channels);

// Bilinear resampling with half-pixel centres and edge clamping, as torch.nn.functional.interpolate(
// mode="bilinear", align_corners=False) without antialiasing; results rounded to the nearest integer.
Image resize_bilinear(const Image& image, int64_t height, int64_t width);

}  // namespace stride
