#include "io/image.hpp"

#include <png.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"

namespace stride {
namespace {

constexpr int64_t kMaxSide = int64_t{1} << 20;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_file(const std::string& path, const char* mode, const char* what) {
  FilePtr f(std::fopen(path.c_str(), mode));
  if (!f) throw IoError(path + ": cannot open " + what + ": " + std::strerror(errno));
  return f;
}

void check_image(const Image& im, const char* who) {
  if (im.channels <= 0 || im.height <= 0 || im.width <= 0 ||
      im.pixels.size() != static_cast<size_t>(im.channels * im.height * im.width))
    throw ShapeError(std::string(who) + ": image of " + std::to_string(im.channels) + "x" + std::to_string(im.height) +
                     "x" + std::to_string(im.width) + " with " + std::to_string(im.pixels.size()) +
                     " pixel bytes is not valid");
}

// libpng reports errors by calling this and expecting it not to return: we keep the message and longjmp
// back into decode_png/encode_png, which hold no C++ objects with destructors between setjmp and the calls.
struct PngError {
  char msg[256] = {0};
};
void png_error_fn(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "libpng error");
  std::longjmp(png_jmpbuf(png), 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

// Decodes the rest of a PNG whose 8 signature bytes were read already, to 8-bit interleaved rows.
// file_bytes: the file's size, which bounds what its compressed rows can hold.
bool decode_png(std::FILE* f, int64_t file_bytes, PngError& err, Image& out, std::vector<uint8_t>& hwc,
                std::vector<png_bytep>& rows) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warning_fn);
  if (!png) {
    std::snprintf(err.msg, sizeof err.msg, "cannot create the libpng reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_init_io(png, f);
  png_set_sig_bytes(png, 8);
  // libpng's own caps, so a header or an ancillary chunk cannot make it allocate before we look at the sizes.
  png_set_user_limits(png, static_cast<png_uint_32>(kMaxSide), static_cast<png_uint_32>(kMaxSide));
  png_set_chunk_malloc_max(png, png_alloc_size_t{8} << 20);
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_scale_16(png);  // rounds, unlike png_set_strip_16
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out.channels = png_get_channels(png, info);
  out.height = png_get_image_height(png, info);
  out.width = png_get_image_width(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  if (out.height > kMaxSide || out.width > kMaxSide || rowbytes != static_cast<size_t>(out.width * out.channels)) {
    std::snprintf(err.msg, sizeof err.msg, "unsupported layout: %lld x %lld, %zu bytes per row",
                  static_cast<long long>(out.height), static_cast<long long>(out.width), rowbytes);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  // The decoded size is checked against the file before it is allocated: deflate expands at most 1032x, so
  // a 74-byte header claiming 30000x30000 pixels is refused at once, and a bomb beyond 100x is refused too.
  const int64_t decoded = static_cast<int64_t>(rowbytes) * out.height;
  if (decoded / 1032 > file_bytes || (decoded > kFreeExpansion && decoded / kMaxExpansion > file_bytes) ||
      decoded > memory_limit() / 2) {
    std::snprintf(err.msg, sizeof err.msg,
                  "%lld x %lld pixels (%lld bytes decoded) cannot come from a %lld-byte file, or exceed the limits",
                  static_cast<long long>(out.width), static_cast<long long>(out.height),
                  static_cast<long long>(decoded), static_cast<long long>(file_bytes));
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  hwc.resize(rowbytes * static_cast<size_t>(out.height));
  rows.resize(static_cast<size_t>(out.height));
  for (int64_t y = 0; y < out.height; ++y) rows[static_cast<size_t>(y)] = hwc.data() + y * rowbytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

bool encode_png(std::FILE* f, PngError& err, const Image& im, std::vector<png_bytep>& rows) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warning_fn);
  if (!png) {
    std::snprintf(err.msg, sizeof err.msg, "cannot create the libpng writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    return false;
  }
  static const int kColor[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(im.width), static_cast<png_uint_32>(im.height), 8,
               kColor[im.channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// Interleaved HWC <-> planar CHW.
void hwc_to_chw(const uint8_t* hwc, Image& im) {
  const int64_t C = im.channels, HW = im.height * im.width;
  im.pixels.resize(static_cast<size_t>(C * HW));
  for (int64_t c = 0; c < C; ++c) {
    uint8_t* dst = im.pixels.data() + c * HW;
    for (int64_t i = 0; i < HW; ++i) dst[i] = hwc[i * C + c];
  }
}
std::vector<uint8_t> chw_to_hwc(const Image& im) {
  const int64_t C = im.channels, HW = im.height * im.width;
  std::vector<uint8_t> hwc(static_cast<size_t>(C * HW));
  for (int64_t c = 0; c < C; ++c) {
    const uint8_t* src = im.pixels.data() + c * HW;
    for (int64_t i = 0; i < HW; ++i) hwc[static_cast<size_t>(i * C + c)] = src[i];
  }
  return hwc;
}

// The whole file: a regular file only, and no larger than half the memory limit.
std::vector<uint8_t> read_all(const std::string& path) {
  const std::string text = read_text_file(path, "image", memory_limit() / 2);
  return {text.begin(), text.end()};
}

}  // namespace

Image read_png(const std::string& path) {
  const auto file_bytes = regular_file_size(path);
  if (!file_bytes) throw IoError(path + ": not a regular file (or missing)");
  FilePtr f = open_file(path, "rb", "PNG image");
  png_byte sig[8] = {0};
  const size_t n = std::fread(sig, 1, 8, f.get());
  if (n < 8 || png_sig_cmp(sig, 0, 8) != 0)
    throw IoError(path + ": not a PNG file (the first 8 bytes are not the PNG signature)");
  PngError err;
  Image im;
  std::vector<uint8_t> hwc;
  std::vector<png_bytep> rows;
  if (!decode_png(f.get(), *file_bytes, err, im, hwc, rows))
    throw IoError(path + ": truncated or corrupt PNG (libpng: " + err.msg + ")");
  hwc_to_chw(hwc.data(), im);
  return im;
}

Image read_pnm(const std::string& path) {
  const std::vector<uint8_t> bytes = read_all(path);
  size_t pos = 0;
  if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6'))
    throw IoError(path + ": not a binary PGM/PPM file (expected magic P5 or P6)");
  const int64_t channels = bytes[1] == '5' ? 1 : 3;
  pos = 2;
  // Header fields: width, height, maxval, separated by whitespace and '#' comments.
  auto field = [&](const char* name) -> int64_t {
    while (pos < bytes.size()) {
      if (bytes[pos] == '#') {
        while (pos < bytes.size() && bytes[pos] != '\n') ++pos;
      } else if (std::isspace(bytes[pos])) {
        ++pos;
      } else {
        break;
      }
    }
    const size_t start = pos;
    int64_t v = 0;
    while (pos < bytes.size() && bytes[pos] >= '0' && bytes[pos] <= '9' && v <= kMaxSide * 64)
      v = v * 10 + (bytes[pos++] - '0');
    if (pos == start)
      throw IoError(path + ": bad or truncated header: expected " + name + " at offset " + std::to_string(start));
    return v;
  };
  const int64_t width = field("width"), height = field("height"), maxval = field("maxval");
  if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide)
    throw IoError(path + ": unsupported size " + std::to_string(width) + "x" + std::to_string(height));
  if (maxval <= 0 || maxval > 65535)
    throw IoError(path + ": unsupported maxval " + std::to_string(maxval) + " (bit depth), expected 1..65535");
  if (pos >= bytes.size() || !std::isspace(bytes[pos]))
    throw IoError(path + ": bad header: expected one whitespace byte after maxval at offset " + std::to_string(pos));
  ++pos;
  const int64_t bps = maxval < 256 ? 1 : 2;
  const int64_t samples = channels * height * width;
  const auto have = static_cast<int64_t>(bytes.size() - pos);
  if (have < samples * bps)
    throw IoError(path + ": truncated pixel data at offset " + std::to_string(pos) + ": expected " +
                  std::to_string(samples * bps) + " bytes, found " + std::to_string(have));
  Image im;
  im.channels = channels;
  im.height = height;
  im.width = width;
  std::vector<uint8_t> hwc(static_cast<size_t>(samples));
  const uint8_t* p = bytes.data() + pos;
  for (int64_t i = 0; i < samples; ++i) {
    const int64_t v = bps == 1 ? p[i] : (int64_t{p[2 * i]} << 8) | p[2 * i + 1];
    hwc[static_cast<size_t>(i)] =
        static_cast<uint8_t>(maxval == 255 ? v : (std::min(v, maxval) * 255 + maxval / 2) / maxval);
  }
  hwc_to_chw(hwc.data(), im);
  return im;
}

Image read_image(const std::string& path) {
  if (!regular_file_size(path)) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) throw IoError(path + ": not a regular file");
  }
  FilePtr f = open_file(path, "rb", "image");
  unsigned char head[8] = {0};
  const size_t n = std::fread(head, 1, 8, f.get());
  f.reset();
  if (n == 8 && png_sig_cmp(head, 0, 8) == 0) return read_png(path);
  if (n >= 2 && head[0] == 'P' && (head[1] == '5' || head[1] == '6')) return read_pnm(path);
  throw IoError(path + ": not an image this build reads: expected PNG or binary PGM (P5) / PPM (P6)");
}

void write_png(const Image& image, const std::string& path) {
  check_image(image, "write_png");
  if (image.channels > 4)
    throw ShapeError("write_png: expected 1 to 4 channels, got " + std::to_string(image.channels) + " for " + path);
  std::vector<uint8_t> hwc = chw_to_hwc(image);
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (int64_t y = 0; y < image.height; ++y)
    rows[static_cast<size_t>(y)] = hwc.data() + y * image.width * image.channels;
  FilePtr f = open_file(path, "wb", "PNG for writing");
  PngError err;
  if (!encode_png(f.get(), err, image, rows)) throw IoError(path + ": cannot write PNG (libpng: " + err.msg + ")");
  if (std::fclose(f.release()) != 0) throw IoError(path + ": cannot write PNG: " + std::strerror(errno));
}

void write_pnm(const Image& image, const std::string& path) {
  check_image(image, "write_pnm");
  if (image.channels != 1 && image.channels != 3)
    throw ShapeError("write_pnm: expected 1 (PGM) or 3 (PPM) channels, got " + std::to_string(image.channels) +
                     " for " + path);
  std::vector<uint8_t> hwc = chw_to_hwc(image);
  FilePtr f = open_file(path, "wb", "PGM/PPM for writing");
  const int written = std::fprintf(f.get(), "P%c\n%lld %lld\n255\n", image.channels == 1 ? '5' : '6',
                                   static_cast<long long>(image.width), static_cast<long long>(image.height));
  if (written < 0 || std::fwrite(hwc.data(), 1, hwc.size(), f.get()) != hwc.size() || std::fclose(f.release()) != 0)
    throw IoError(path + ": cannot write PGM/PPM: " + std::strerror(errno));
}

Image convert_channels(const Image& image, int64_t channels) {
  check_image(image, "convert_channels");
  if (image.channels > 4)
    throw ShapeError("convert_channels: expected a 1 to 4 channel image, got " + std::to_string(image.channels));
  if (channels != 1 && channels != 3)
    throw ShapeError("convert_channels: expected 1 (gray) or 3 (RGB) target channels, got " + std::to_string(channels));
  const int64_t HW = image.height * image.width;
  Image out(channels, image.height, image.width);
  const bool color = image.channels >= 3;  // 3 RGB, 4 RGBA; 1 gray, 2 gray+alpha
  if (channels == 1) {
    if (color) {
      // BT.601 weights 0.299, 0.587, 0.114 in 16-bit fixed point with rounding: Pillow's exact formula, so
      // images converted here and by PIL's convert("L") agree bit for bit.
      const uint8_t *r = image.pixels.data(), *g = r + HW, *b = g + HW;
      for (int64_t i = 0; i < HW; ++i)
        out.pixels[static_cast<size_t>(i)] =
            static_cast<uint8_t>((19595 * r[i] + 38470 * g[i] + 7471 * b[i] + 0x8000) >> 16);
    } else {
      std::copy_n(image.pixels.begin(), HW, out.pixels.begin());
    }
  } else {
    for (int64_t c = 0; c < 3; ++c)
      std::copy_n(image.pixels.begin() + (color ? c : 0) * HW, HW, out.pixels.begin() + c * HW);
  }
  return out;
}

// x: (C, H, W) -> y: (C, P, Q); source coordinate of output q: (q + 0.5) * W / Q - 0.5, clamped at 0.
Image resize_bilinear(const Image& image, int64_t height, int64_t width) {
  check_image(image, "resize_bilinear");
  if (height <= 0 || width <= 0 || height > kMaxSide || width > kMaxSide)
    throw ShapeError("resize_bilinear: expected a positive target size, got " + std::to_string(height) + "x" +
                     std::to_string(width));
  const int64_t C = image.channels, H = image.height, W = image.width, P = height, Q = width;
  check_memory(C * P * Q, "resize_bilinear: a " + std::to_string(C) + "x" + std::to_string(P) + "x" +
                              std::to_string(Q) + " image");
  Image out(C, P, Q);
  // Column taps are the same for every row and channel: compute them once.
  std::vector<int64_t> x0(static_cast<size_t>(Q)), x1(static_cast<size_t>(Q));
  std::vector<double> lx(static_cast<size_t>(Q));
  const double sx = static_cast<double>(W) / static_cast<double>(Q),
               sy = static_cast<double>(H) / static_cast<double>(P);
  for (int64_t q = 0; q < Q; ++q) {
    const double src = std::max(0.0, (static_cast<double>(q) + 0.5) * sx - 0.5);
    const auto i = static_cast<size_t>(q);
    x0[i] = std::min(static_cast<int64_t>(src), W - 1);
    x1[i] = std::min(x0[i] + 1, W - 1);
    lx[i] = src - static_cast<double>(x0[i]);
  }
  for (int64_t c = 0; c < C; ++c) {
    const uint8_t* plane = image.pixels.data() + c * H * W;
    uint8_t* dst = out.pixels.data() + c * P * Q;
    for (int64_t p = 0; p < P; ++p) {
      const double src = std::max(0.0, (static_cast<double>(p) + 0.5) * sy - 0.5);
      const int64_t y0 = std::min(static_cast<int64_t>(src), H - 1), y1 = std::min(y0 + 1, H - 1);
      const double ly = src - static_cast<double>(y0);
      const uint8_t *r0 = plane + y0 * W, *r1 = plane + y1 * W;
      for (int64_t q = 0; q < Q; ++q) {
        const auto i = static_cast<size_t>(q);
        const double top = r0[x0[i]] + lx[i] * (r0[x1[i]] - r0[x0[i]]);
        const double bot = r1[x0[i]] + lx[i] * (r1[x1[i]] - r1[x0[i]]);
        dst[p * Q + q] = static_cast<uint8_t>(std::clamp(std::lround(top + ly * (bot - top)), 0L, 255L));
      }
    }
  }
  return out;
}

}  // namespace stride
