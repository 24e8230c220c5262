// Image files (PNG, PGM, PPM) and the two pixel operations `stride predict` needs: channel conversion and
// bilinear resizing. Reference behaviour: PIL's convert("L") for gray, torch.nn.functional.interpolate(
// mode="bilinear", align_corners=False) for resizing.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "tests/expect_error.hpp"
#include "tests/temp_dir.hpp"
#include "io/image.hpp"

using namespace stride;
using stride::test::contains;
using stride::test::io_error;
using stride::test::write_bytes;
namespace fs = std::filesystem;

namespace {

struct TempDir : stride::test::TempDir {
  TempDir() : stride::test::TempDir("image-test") {}
};

void write_text(const std::string& path, const std::string& s) {
  write_bytes(path, std::vector<uint8_t>(s.begin(), s.end()));
}

Image pattern(int64_t c, int64_t h, int64_t w, int seed) {
  Image im(c, h, w);
  uint32_t s = static_cast<uint32_t>(seed) * 2654435761u + 7;
  for (auto& p : im.pixels) p = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  return im;
}


// PNG fixtures built with Python's zlib + struct (hand-made chunks, so bit depth and colour type are exactly
// as stated), then decoded by PIL to confirm the expected pixels.
// 2x2 16-bit gray: 0, 65535 / 32896, 1000.
const std::vector<uint8_t> kGray16 = {
    137, 80,  78,  71, 13, 10, 26,  10,  0,   0,   0,   13, 73, 72, 68, 82, 0,   0,   0,  2,  0,  0,   0,   2,   16,
    0,   0,   0,   0,  7,  77, 142, 187, 0,   0,   0,   18, 73, 68, 65, 84, 120, 156, 99, 96, 96, 248, 255, 159, 161,
    161, 129, 249, 5,  0,  17, 107, 3,   234, 133, 126, 5,  40, 0,  0,  0,  0,   73,  69, 78, 68, 174, 66,  96,  130};
// 3x2 4-bit palette (red, green, blue) with tRNS alpha (255, 128): rows 0,1,2 / 2,1,0.
const std::vector<uint8_t> kPalette4 = {
    137, 80,  78,  71, 13,  10,  26, 10,  0,   0,   0,   13,  73, 72, 68,  82, 0,  0,   0,   3,   0, 0,
    0,   2,   4,   3,  0,   0,   0,  111, 90,  123, 41,  0,   0,  0,  9,   80, 76, 84,  69,  255, 0, 0,
    0,   255, 0,   0,  0,   255, 45, 74,  205, 138, 0,   0,   0,  2,  116, 82, 78, 83,  255, 128, 8, 15,
    179, 106, 0,   0,  0,   14,  73, 68,  65,  84,  120, 156, 99, 96, 84,  96, 80, 100, 0,   0,   0, 205,
    0,   67,  103, 48, 149, 219, 0,  0,   0,   0,   73,  69,  78, 68, 174, 66, 96, 130};
// 8x1 1-bit gray: 1,0,1,1,0,0,0,1.
const std::vector<uint8_t> kGray1 = {137, 80,  78, 71,  13, 10, 26, 10,  0,   0,  0,   13, 73,  72,  68,  82,  0,
                                     0,   0,   8,  0,   0,  0,  1,  1,   0,   0,  0,   0,  203, 123, 210, 238, 0,
                                     0,   0,   10, 73,  68, 65, 84, 120, 156, 99, 216, 8,  0,   0,   179, 0,   178,
                                     33,  146, 81, 202, 0,  0,  0,  0,   73,  69, 78,  68, 174, 66,  96,  130};
// 1x1 16-bit RGB: (65535, 257, 0x1234).
const std::vector<uint8_t> kRgb16 = {
    137, 80,  78, 71, 13, 10,  26,  10,  0,   0,  0,   13,  73, 72, 68, 82, 0,  0,   0,   1,  0,   0,   0,   1,
    16,  2,   0,  0,  0,  192, 231, 143, 157, 0,  0,   0,   15, 73, 68, 65, 84, 120, 156, 99, 248, 255, 159, 145,
    81,  200, 4,  0,  11, 91,  2,   71,  174, 75, 201, 170, 0,  0,  0,  0,  73, 69,  78,  68, 174, 66,  96,  130};

}  // namespace

TEST_CASE("PNG round trip for gray, gray+alpha, RGB and RGBA keeps every byte") {
  TempDir tmp;
  for (int64_t c = 1; c <= 4; ++c) {
    CAPTURE(c);
    const Image im = pattern(c, 7, 5, static_cast<int>(c));
    const std::string path = tmp / ("im" + std::to_string(c) + ".png");
    write_png(im, path);
    const Image back = read_image(path);
    CHECK(back.channels == c);
    CHECK(back.height == 7);
    CHECK(back.width == 5);
    CHECK(back.pixels == im.pixels);
  }
}

TEST_CASE("PGM (P5) and PPM (P6) round trips with comments and 16-bit maxval in the header") {
  TempDir tmp;
  for (int64_t c : {1, 3}) {
    const Image im = pattern(c, 3, 4, 10 + static_cast<int>(c));
    const std::string path = tmp / (c == 1 ? "im.pgm" : "im.ppm");
    write_pnm(im, path);
    const Image back = read_image(path);
    CHECK(back.channels == c);
    CHECK(back.height == 3);
    CHECK(back.width == 4);
    CHECK(back.pixels == im.pixels);
  }
  // P6 is interleaved on disk; our pixels are planar: pixel (0, 1) is bytes 3..5.
  write_text(tmp / "hand.ppm", std::string("P6\n# made by hand\n2 1\n255\n") + "\x01\x02\x03\x04\x05\x06");
  Image im = read_image(tmp / "hand.ppm");
  CHECK(im.pixels == std::vector<uint8_t>{1, 4, 2, 5, 3, 6});
  // maxval 1000, 2 bytes big-endian: 0, 500, 1000 -> 0, 128 (127.5 rounded up), 255.
  write_text(tmp / "wide.pgm", std::string("P5 3 1 1000\n") + std::string("\x00\x00\x01\xf4\x03\xe8", 6));
  im = read_image(tmp / "wide.pgm");
  CHECK(im.pixels == std::vector<uint8_t>{0, 128, 255});
  // maxval 15 (4-bit data in bytes): 15 -> 255, 1 -> 17.
  write_text(tmp / "nibble.pgm", std::string("P5\n2 1\n15\n") + "\x0f\x01");
  CHECK(read_image(tmp / "nibble.pgm").pixels == std::vector<uint8_t>{255, 17});
}

TEST_CASE("PNG decoding: 16-bit scaled with rounding, palette with tRNS to RGBA, 1-bit gray expanded") {
  TempDir tmp;
  write_bytes(tmp / "g16.png", kGray16);
  Image im = read_png(tmp / "g16.png");
  CHECK(im.channels == 1);
  // round(v * 255 / 65535): 32896 -> 128, 1000 -> 4 (3.89).
  CHECK(im.pixels == std::vector<uint8_t>{0, 255, 128, 4});

  write_bytes(tmp / "pal.png", kPalette4);
  im = read_png(tmp / "pal.png");
  CHECK(im.channels == 4);
  CHECK(im.height == 2);
  CHECK(im.width == 3);
  // PIL: Image.open(pal.png).convert("RGBA") = [[(255,0,0,255), (0,255,0,128), (0,0,255,255)], reversed row].
  CHECK(im.pixels == std::vector<uint8_t>{255, 0,   0,   0,   0,   255,    // R
                                          0,   255, 0,   0,   255, 0,      // G
                                          0,   0,   255, 255, 0,   0,      // B
                                          255, 128, 255, 255, 128, 255});  // A
  const Image rgb = convert_channels(im, 3);                               // alpha dropped, as PIL's convert("RGB")
  CHECK(rgb.pixels == std::vector<uint8_t>(im.pixels.begin(), im.pixels.begin() + 18));

  write_bytes(tmp / "g1.png", kGray1);
  im = read_png(tmp / "g1.png");
  CHECK(im.pixels == std::vector<uint8_t>{255, 0, 255, 255, 0, 0, 0, 255});

  write_bytes(tmp / "rgb16.png", kRgb16);
  im = read_image(tmp / "rgb16.png");
  CHECK(im.channels == 3);
  CHECK(im.pixels == std::vector<uint8_t>{255, 1, 18});  // 257 -> 1, 0x1234 = 4660 -> 18.13 -> 18
}

TEST_CASE("convert_channels: BT.601 gray equals PIL's convert('L'), gray to RGB copies, alpha is dropped") {
  Image rgb(3, 1, 7);
  const uint8_t px[7][3] = {{255, 0, 0},     {0, 255, 0}, {0, 0, 255},    {12, 200, 99},
                            {255, 255, 255}, {1, 2, 3},   {128, 128, 127}};
  for (int x = 0; x < 7; ++x)
    for (int c = 0; c < 3; ++c) rgb.at(c, 0, x) = px[x][c];
  // PIL 9.4: Image.fromarray(px, "RGB").convert("L").
  CHECK(convert_channels(rgb, 1).pixels == std::vector<uint8_t>{76, 150, 29, 132, 255, 2, 128});
  Image rgba(4, 1, 7, 9);
  std::copy(rgb.pixels.begin(), rgb.pixels.end(), rgba.pixels.begin());
  CHECK(convert_channels(rgba, 1).pixels == convert_channels(rgb, 1).pixels);
  CHECK(convert_channels(rgba, 3).pixels == rgb.pixels);

  Image gray = pattern(1, 2, 3, 5);
  Image g3 = convert_channels(gray, 3);
  CHECK(g3.channels == 3);
  for (int c = 0; c < 3; ++c)
    CHECK(std::vector<uint8_t>(g3.pixels.begin() + c * 6, g3.pixels.begin() + (c + 1) * 6) == gray.pixels);
  Image ga = pattern(2, 2, 3, 6);
  CHECK(convert_channels(ga, 1).pixels == std::vector<uint8_t>(ga.pixels.begin(), ga.pixels.begin() + 6));
  CHECK(convert_channels(gray, 1).pixels == gray.pixels);
  CHECK_THROWS_AS(convert_channels(gray, 2), ShapeError);
}

TEST_CASE("resize_bilinear matches torch interpolate(bilinear, align_corners=False), constant stays constant") {
  Image im(1, 2, 2);
  im.pixels = {10, 20, 30, 40};
  // torch.nn.functional.interpolate(torch.tensor([[[[10., 20.], [30., 40.]]]]), size=(4, 4), mode="bilinear",
  // align_corners=False) = [10, 12.5, 17.5, 20, 15, 17.5, 22.5, 25, 25, 27.5, 32.5, 35, 30, 32.5, 37.5, 40];
  // halves round away from zero here.
  CHECK(resize_bilinear(im, 4, 4).pixels ==
        std::vector<uint8_t>{10, 13, 18, 20, 15, 18, 23, 25, 25, 28, 33, 35, 30, 33, 38, 40});
  // size (3, 3): [10, 15, 20, 20, 25, 30, 30, 35, 40]; (1, 1): [25]; (3, 2): [10, 20, 20, 30, 30, 40].
  CHECK(resize_bilinear(im, 3, 3).pixels == std::vector<uint8_t>{10, 15, 20, 20, 25, 30, 30, 35, 40});
  CHECK(resize_bilinear(im, 1, 1).pixels == std::vector<uint8_t>{25});
  CHECK(resize_bilinear(im, 3, 2).pixels == std::vector<uint8_t>{10, 20, 20, 30, 30, 40});
  // Downscale 4x4 (v = 16 * i) to (2, 3): torch gives [34.67, 56, 77.33, 162.67, 184, 205.33].
  Image big(1, 4, 4);
  for (int i = 0; i < 16; ++i) big.pixels[static_cast<size_t>(i)] = static_cast<uint8_t>(16 * i);
  CHECK(resize_bilinear(big, 2, 3).pixels == std::vector<uint8_t>{35, 56, 77, 163, 184, 205});

  for (auto [h, w] : {std::pair<int64_t, int64_t>{1, 1}, {5, 9}, {32, 32}, {3, 40}}) {
    Image flat(3, 7, 11, 0);
    for (int64_t c = 0; c < 3; ++c)
      std::fill_n(flat.pixels.begin() + c * 77, 77, static_cast<uint8_t>(c == 0 ? 0 : c == 1 ? 137 : 255));
    const Image r = resize_bilinear(flat, h, w);
    CHECK(r.channels == 3);
    CHECK(r.height == h);
    CHECK(r.width == w);
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < h * w; ++i)
        CHECK(r.pixels[static_cast<size_t>(c * h * w + i)] == (c == 0 ? 0 : c == 1 ? 137 : 255));
  }
  // Same size is the identity.
  const Image p = pattern(2, 6, 5, 3);
  CHECK(resize_bilinear(p, 6, 5).pixels == p.pixels);
  CHECK_THROWS_AS(resize_bilinear(p, 0, 5), ShapeError);
}

TEST_CASE("image errors name the file and the problem: garbage, truncated PNG, bad PNM headers, missing file") {
  TempDir tmp;
  write_text(tmp / "garbage.png", "this is not an image at all");
  std::string msg = io_error([&] { read_image(tmp / "garbage.png"); });
  CHECK(contains(msg, "garbage.png"));
  CHECK(contains(msg, "not an image"));
  msg = io_error([&] { read_png(tmp / "garbage.png"); });
  CHECK(contains(msg, "not a PNG"));

  write_png(pattern(3, 40, 40, 1), tmp / "whole.png");
  std::ifstream in(tmp / "whole.png", std::ios::binary);
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  bytes.resize(bytes.size() / 2);
  write_bytes(tmp / "cut.png", bytes);
  msg = io_error([&] { read_image(tmp / "cut.png"); });
  CHECK(contains(msg, "cut.png"));
  CHECK(contains(msg, "truncated"));

  write_text(tmp / "short.ppm", std::string("P6\n4 4\n255\n") + "abc");
  msg = io_error([&] { read_image(tmp / "short.ppm"); });
  CHECK(contains(msg, "short.ppm"));
  CHECK(contains(msg, "expected 48 bytes, found 3"));
  write_text(tmp / "deep.pgm", "P5\n1 1\n70000\n\x01\x02\x03");
  msg = io_error([&] { read_image(tmp / "deep.pgm"); });
  CHECK(contains(msg, "deep.pgm"));
  CHECK(contains(msg, "maxval 70000"));
  write_text(tmp / "nodims.pgm", "P5\n# only a comment\n");
  msg = io_error([&] { read_image(tmp / "nodims.pgm"); });
  CHECK(contains(msg, "expected width"));
  msg = io_error([&] { read_image(tmp / "absent.png"); });
  CHECK(contains(msg, "absent.png"));
  CHECK_THROWS_AS(write_pnm(pattern(4, 2, 2, 1), tmp / "rgba.ppm"), ShapeError);
  CHECK_THROWS_AS(write_png(pattern(1, 2, 2, 1), tmp / "no/such/dir.png"), IoError);
}
