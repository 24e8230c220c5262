// Conv2d: the lecture's worked examples, golden values from torch.nn.Conv2d for every padding mode, gradient
// checks for every configuration variant, thread-count bit-identity, and the boundary errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/bf16.hpp"
#include "layers/conv2d.hpp"
#include "tests/expect_error.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::check_gradients;
using stride::test::LayerParams;
using stride::test::random_tensor;
using stride::test::tensor_from;
using stride::test::thrown_message;

namespace {

Conv2dOptions conv_opts(int64_t k, int64_t r, int64_t s, Padding padding, int64_t pad_h, int64_t pad_w, bool bias) {
  Conv2dOptions o;
  o.out_channels = k;
  o.kernel_h = r;
  o.kernel_w = s;
  o.padding = padding;
  o.pad_h = pad_h;
  o.pad_w = pad_w;
  o.bias = bias;
  return o;
}

// Every element, exactly: the goldens below are sums of a few dyadic rationals, exact in float32.
void check_exact(const Tensor& y, const Shape& shape, const std::vector<float>& expected) {
  REQUIRE(y.shape() == shape);
  REQUIRE(static_cast<int64_t>(expected.size()) == y.numel());
  for (int64_t i = 0; i < y.numel(); ++i) {
    INFO("element " << i);
    CHECK(y[i] == expected[static_cast<size_t>(i)]);
  }
}

// Runs a single-channel, bias-free convolution of `x` with `kernel` (both rank 4, N = C = K = 1).
Tensor convolve(const Tensor& x, const Tensor& kernel, Conv2dOptions o) {
  Conv2d conv("conv", o);
  LayerParams params(conv, x.shape());
  params.value("weight").assign(kernel.span().begin(), kernel.span().end());
  Tensor y;
  conv.forward(x, y, RunContext{});
  return y;
}

// Padded-space index i of an input of size n mapped back to the input as torch's padding_mode does,
// or -1 for a zero. Written independently of the layer, as the textbook definition.
int64_t reference_source(int64_t i, int64_t n, Padding mode) {
  if (i >= 0 && i < n) return i;
  if (mode == Padding::zeros || mode == Padding::valid) return -1;
  if (mode == Padding::circular) return ((i % n) + n) % n;
  if (mode == Padding::replicate) return i < 0 ? 0 : n - 1;
  return i < 0 ? -i : 2 * (n - 1) - i;  // reflect
}

// Direct seven-loop convolution in double: y = conv(x, w) + b, and for a given dy the exact dx and dw
// (each padded element's gradient added to the input element it copies).
struct Reference {
  std::vector<double> y, dx, dw;
};
Reference reference_conv(const Tensor& x, const std::vector<float>& w, const std::vector<float>& b,
                         const Conv2dOptions& o, const Tensor& dy) {
  const int64_t N = x.shape().n(), C = x.shape().c(), H = x.shape().h(), W = x.shape().w();
  const int64_t K = o.out_channels, R = o.kernel_h, S = o.kernel_w;
  const int64_t P = (H + 2 * o.pad_h - o.dilation_h * (R - 1) - 1) / o.stride_h + 1;
  const int64_t Q = (W + 2 * o.pad_w - o.dilation_w * (S - 1) - 1) / o.stride_w + 1;
  Reference ref;
  ref.y.assign(static_cast<size_t>(N * K * P * Q), 0.0);
  ref.dx.assign(static_cast<size_t>(x.numel()), 0.0);
  ref.dw.assign(w.size(), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          const size_t yi = static_cast<size_t>(((n * K + k) * P + p) * Q + q);
          double acc = b.empty() ? 0.0 : b[static_cast<size_t>(k)];
          const double g = dy[static_cast<int64_t>(yi)];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t s = 0; s < S; ++s) {
                const int64_t h = reference_source(p * o.stride_h - o.pad_h + r * o.dilation_h, H, o.padding);
                const int64_t v = reference_source(q * o.stride_w - o.pad_w + s * o.dilation_w, W, o.padding);
                if (h < 0 || v < 0) continue;
                const size_t wi = static_cast<size_t>(((k * C + c) * R + r) * S + s);
                const size_t xi = static_cast<size_t>(((n * C + c) * H + h) * W + v);
                acc += static_cast<double>(w[wi]) * x[static_cast<int64_t>(xi)];
                ref.dx[xi] += static_cast<double>(w[wi]) * g;
                ref.dw[wi] += static_cast<double>(x[static_cast<int64_t>(xi)]) * g;
              }
          ref.y[yi] = acc;
        }
  return ref;
}

}  // namespace

TEST_CASE("conv2d: the lecture's 1-D example as an image of height 1, every boundary treatment") {
  // f = [1,0,-2,3,1,2,-1,5,-3], g = [0.5,1,0.5]; kernel [1,3], pad [0,1] (0 for valid), no bias.
  const Tensor f = tensor_from(Shape{1, 1, 1, 9}, {1, 0, -2, 3, 1, 2, -1, 5, -3});
  const Tensor g = tensor_from(Shape{1, 1, 1, 3}, {0.5f, 1, 0.5f});
  check_exact(convolve(f, g, conv_opts(1, 1, 3, Padding::valid, 0, 0, false)), Shape{1, 1, 1, 7},
              {-0.5f, -0.5f, 2.5f, 3.5f, 2, 2.5f, 3});
  check_exact(convolve(f, g, conv_opts(1, 1, 3, Padding::zeros, 0, 1, false)), Shape{1, 1, 1, 9},
              {1, -0.5f, -0.5f, 2.5f, 3.5f, 2, 2.5f, 3, -0.5f});
  check_exact(convolve(f, g, conv_opts(1, 1, 3, Padding::circular, 0, 1, false)), Shape{1, 1, 1, 9},
              {-0.5f, -0.5f, -0.5f, 2.5f, 3.5f, 2, 2.5f, 3, 0});
  check_exact(convolve(f, g, conv_opts(1, 1, 3, Padding::replicate, 0, 1, false)), Shape{1, 1, 1, 9},
              {1.5f, -0.5f, -0.5f, 2.5f, 3.5f, 2, 2.5f, 3, -2});
  // torch.nn.Conv2d(1, 1, (1, 3), padding=(0, 1), bias=False, padding_mode='reflect')
  check_exact(convolve(f, g, conv_opts(1, 1, 3, Padding::reflect, 0, 1, false)), Shape{1, 1, 1, 9},
              {1, -0.5f, -0.5f, 2.5f, 3.5f, 2, 2.5f, 3, 2});
}

TEST_CASE("conv2d: the lecture's 2-D Laplacian example, every boundary treatment and stride 3") {
  const Tensor img = tensor_from(Shape{1, 1, 6, 6}, {1, 2, -1, 4, 4, 2, 4, -1, 2, 3, 6, 2, 2, 1, 4, 1, 3, 3,
                                                     1, 5, 2,  4, 8, 7, 3, 5,  2, 1, 9, 8, 6, 5, 7, 6, 6, 6});
  const Tensor lap = tensor_from(Shape{1, 1, 3, 3}, {0, -1, 0, -1, 4, -1, 0, -1, 0});
  check_exact(convolve(img, lap, conv_opts(1, 3, 3, Padding::valid, 0, 0, false)), Shape{1, 1, 4, 4},
              {-13, 3, -1, 12, -6, 10, -10, -6, 11, -7, 4, 9, 5, -7, -17, 13});
  Conv2dOptions s3 = conv_opts(1, 3, 3, Padding::valid, 0, 0, false);
  s3.stride_h = s3.stride_w = 3;
  check_exact(convolve(img, lap, s3), Shape{1, 1, 2, 2}, {-13, 12, 5, 13});
  // The lecture gives the first rows (and the last for zeros); the full 6x6 from
  // torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode=<mode>).
  check_exact(convolve(img, lap, conv_opts(1, 3, 3, Padding::zeros, 1, 1, false)), Shape{1, 1, 6, 6},
              {-2, 9,  -12, 10, 4, 2, 14, -13, 3,  -1,  12, -3, 2,  -6, 10, -10, -6, 0,
               -6, 11, -7,  4,  9, 9, 0,  5,   -7, -17, 13, 10, 16, 2,  15, 10,  3,  10});
  check_exact(convolve(img, lap, conv_opts(1, 3, 3, Padding::circular, 1, 1, false)), Shape{1, 1, 6, 6},
              {-10, 4,  -19, 4, -2, -5, 12, -13, 3,  -1,  12, -7, -1, -6, 10, -10, -6, -2,
               -13, 11, -7,  4, 9,  8,  -8, 5,   -7, -17, 13, 7,  9,  0,  16, 6,   -1, 2});
  check_exact(convolve(img, lap, conv_opts(1, 3, 3, Padding::replicate, 1, 1, false)), Shape{1, 1, 6, 6},
              {-4, 7,  -11, 6, 0, -2, 10, -13, 3,  -1,  12, -5, 0, -6, 10, -10, -6, -3,
               -7, 11, -7,  4, 9, 2,  -3, 5,   -7, -17, 13, 2,  4, -3, 8,  4,   -3, -2});
  check_exact(convolve(img, lap, conv_opts(1, 3, 3, Padding::reflect, 1, 1, false)), Shape{1, 1, 6, 6},
              {-8,  10, -14, 7, -2, -4, 15, -13, 3,  -1,  12, -9, 1, -6, 10, -10, -6, -3,
               -11, 11, -7,  4, 9,  1,  -5, 5,   -7, -17, 13, 1,  8, -3, 13, 9,   -6, -4});
}

TEST_CASE("conv2d: multi-channel, biased, stride 2, dilation 2, 3x2 kernel matches torch.nn.Conv2d") {
  // x[i] = ((7 i) mod 11 - 5) / 4 over (2, 3, 7, 8); w[i] = ((5 i) mod 7 - 3) / 8 over (2, 3, 3, 2);
  // b = [0.5, -0.25]. Golden: torch.nn.Conv2d(3, 2, (3, 2), stride=2, padding=(2, 1), dilation=2,
  // padding_mode=<mode>) (padding=0 for valid), torch 1.13, one thread.
  Tensor x(Shape{2, 3, 7, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((7 * i) % 11 - 5) / 4.0f;
  struct Case {
    Padding padding;
    Shape out;
    std::vector<float> y;
  };
  const std::vector<Case> cases = {
      {Padding::valid, Shape{2, 2, 2, 3}, {0.4375f,  0.5f,      2.28125f, 1.28125f,  0.65625f, -1.0f,
                                           -0.3125f, -1.0f,     0.71875f, -0.65625f, 0.71875f, -1.0f,
                                           -1.1875f, 1.28125f,  0.65625f, 2.0625f,   0.40625f, 1.15625f,
                                           -0.3125f, -0.65625f, 0.71875f, -0.3125f,  0.03125f, 0.03125f}},
      {Padding::zeros,
       Shape{2, 2, 4, 4},
       {1.0625f,   0.0f,     -0.15625f, 0.71875f,  0.3125f,   1.15625f,  -1.1875f, 1.28125f, 1.34375f,  -1.09375f,
        2.0625f,   0.40625f, 0.25f,     0.65625f,  -0.25f,    1.59375f,  0.15625f, 0.15625f, -1.5f,     -0.0625f,
        -0.875f,   0.03125f, -0.3125f,  -0.65625f, 0.71875f,  -0.65625f, -0.3125f, 0.03125f, 0.0625f,   -0.0625f,
        -1.5f,     0.15625f, 1.0f,      -0.0625f,  0.8125f,   -0.03125f, 0.65625f, 2.28125f, -1.09375f, 2.0625f,
        0.65625f,  -1.0f,    0.4375f,   0.5f,      1.0f,      -0.1875f,  0.625f,   0.0625f,  0.28125f,  0.25f,
        -0.71875f, -1.0f,    -0.8125f,  0.71875f,  -0.65625f, -0.3125f,  -0.25f,   -1.0f,    -0.3125f,  -1.0f,
        0.4375f,   0.875f,   -1.25f,    0.0625f}},
      {Padding::circular,
       Shape{2, 2, 4, 4},
       {-0.25f,    0.59375f,  0.3125f,   1.0625f,   0.3125f,   1.15625f,  -1.1875f, 1.28125f,  1.15625f,  -1.09375f,
        2.0625f,   0.40625f,  0.65625f,  1.15625f,  -0.5f,     0.59375f,  1.09375f, -1.03125f, -1.71875f, 0.6875f,
        0.09375f,  0.03125f,  -0.3125f,  -0.65625f, 0.09375f,  -0.65625f, -0.3125f, 0.03125f,  1.09375f,  0.6875f,
        -1.71875f, -1.03125f, -0.15625f, -0.34375f, 1.09375f,  0.46875f,  0.75f,    2.28125f,  -1.09375f, 2.0625f,
        1.59375f,  -1.0f,     0.4375f,   0.5f,      0.75f,     0.5625f,   1.3125f,  -1.03125f, 1.09375f,  0.0f,
        -1.71875f, -0.34375f, 0.09375f,  0.71875f,  -0.65625f, -0.3125f,  -0.25f,   -1.0f,     -0.3125f,  -1.0f,
        0.0625f,   1.375f,    -0.6875f,  -1.03125f}},
      {Padding::replicate,
       Shape{2, 2, 4, 4},
       {1.34375f,  0.34375f, -1.3125f,  1.15625f,  1.125f,    1.15625f,  -1.1875f,  1.28125f, 1.28125f,  -1.09375f,
        2.0625f,   0.40625f, 0.5625f,   -0.4375f,  0.3125f,   2.09375f,  -1.40625f, 0.90625f, -0.8125f,  -1.15625f,
        -0.90625f, 0.03125f, -0.3125f,  -0.65625f, 0.46875f,  -0.65625f, -0.3125f,  0.03125f, 1.0f,      -1.15625f,
        -0.8125f,  0.90625f, 0.40625f,  0.4375f,   -0.1875f,  0.5625f,   -0.15625f, 2.28125f, -1.09375f, 2.0625f,
        1.375f,    -1.0f,    0.4375f,   0.5f,      1.0f,      -1.375f,   0.40625f,  0.8125f,  -0.71875f, 0.90625f,
        -0.125f,   -2.1875f, -0.90625f, 0.71875f,  -0.65625f, -0.3125f,  -0.21875f, -1.0f,    -0.3125f,  -1.0f,
        0.65625f,  -0.125f,  -1.5f,     0.5625f}},
      {Padding::reflect,
       Shape{2, 2, 4, 4},
       {0.71875f,  -1.0f,    0.4375f,   1.1875f,   0.125f,    1.15625f,  -1.1875f,  1.28125f, 0.625f,    -1.09375f,
        2.0625f,   0.40625f, 0.40625f,  0.40625f,  -1.25f,    2.25f,     1.625f,    0.75f,    -2.6875f,  -0.28125f,
        -1.5f,     0.03125f, -0.3125f,  -0.65625f, 0.5625f,   -0.65625f, -0.3125f,  0.03125f, -0.4375f,  -0.28125f,
        -2.6875f,  0.75f,    0.8125f,   -0.90625f, 0.53125f,  0.25f,     1.59375f,  2.28125f, -1.09375f, 2.0625f,
        0.03125f,  -1.0f,    0.4375f,   0.5f,      1.53125f,  0.5f,      -0.46875f, 0.625f,   1.625f,    0.75f,
        -0.96875f, -2.0f,    -0.8125f,  0.71875f,  -0.65625f, -0.3125f,  -0.8125f,  -1.0f,    -0.3125f,  -1.0f,
        1.625f,    1.4375f,  -2.34375f, 0.75f}},
  };
  for (const Case& c : cases) {
    INFO("padding mode " << static_cast<int>(c.padding));
    const bool padded = c.padding != Padding::valid;
    Conv2dOptions o = conv_opts(2, 3, 2, c.padding, padded ? 2 : 0, padded ? 1 : 0, true);
    o.stride_h = o.stride_w = 2;
    o.dilation_h = o.dilation_w = 2;
    Conv2d conv("conv1", o);
    LayerParams params(conv, x.shape());
    auto& w = params.value("weight");
    REQUIRE(w.size() == 36);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int64_t>((5 * i) % 7) - 3) / 8.0f;
    params.value("bias") = {0.5f, -0.25f};
    CHECK(conv.output_shape(x.shape()) == c.out);
    Tensor y(Shape{1}, 123.0f);  // resized and overwritten
    conv.forward(x, y, RunContext{});
    check_exact(y, c.out, c.y);
  }
}

TEST_CASE("conv2d: a 1x1 convolution (no im2col) is the per-pixel channel mix") {
  Conv2d conv("mix", conv_opts(3, 1, 1, Padding::zeros, 0, 0, true));
  const Tensor x = random_tensor(Shape{2, 4, 3, 5}, 11);
  LayerParams params(conv, x.shape());
  Tensor y;
  conv.forward(x, y, RunContext{});
  REQUIRE(y.shape() == Shape({2, 3, 3, 5}));
  const auto& w = params.value("weight");
  const auto& b = params.value("bias");
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t k = 0; k < 3; ++k)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t v = 0; v < 5; ++v) {
          double s = b[static_cast<size_t>(k)];
          for (int64_t c = 0; c < 4; ++c)
            s += static_cast<double>(w[static_cast<size_t>(k * 4 + c)]) * x.at(n, c, h, v);
          CHECK(y.at(n, k, h, v) == doctest::Approx(s).epsilon(1e-5));
        }
}

TEST_CASE("conv2d: central-difference gradients for every padding mode, stride, dilation, kernel and bias") {
  struct Variant {
    const char* what;
    Conv2dOptions o;
    Shape in;
  };
  auto make = [](Padding mode, int64_t r, int64_t s, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh,
                 int64_t dw, bool bias) {
    Conv2dOptions o = conv_opts(3, r, s, mode, ph, pw, bias);
    o.stride_h = sh;
    o.stride_w = sw;
    o.dilation_h = dh;
    o.dilation_w = dw;
    return o;
  };
  const std::vector<Variant> variants = {
      {"valid 3x2, no bias", make(Padding::valid, 3, 2, 0, 0, 1, 1, 1, 1, false), Shape{2, 2, 5, 6}},
      {"zeros 3x2 pad (2,1) stride (2,1) dilation (1,2) bias", make(Padding::zeros, 3, 2, 2, 1, 2, 1, 1, 2, true),
       Shape{2, 2, 6, 7}},
      {"circular 3x3 pad (1,2) stride 2 dilation 2 bias", make(Padding::circular, 3, 3, 1, 2, 2, 2, 2, 2, true),
       Shape{2, 2, 6, 7}},
      {"circular pad equal to the input size", make(Padding::circular, 3, 2, 3, 4, 1, 1, 1, 1, true),
       Shape{2, 2, 3, 4}},
      {"replicate 2x3 pad (2,1) stride (1,2) dilation (2,1) no bias",
       make(Padding::replicate, 2, 3, 2, 1, 1, 2, 2, 1, false), Shape{2, 2, 6, 7}},
      {"replicate pad larger than the input", make(Padding::replicate, 3, 3, 4, 3, 2, 1, 1, 1, true),
       Shape{2, 1, 3, 2}},
      {"reflect 3x2 pad (2,1) stride 2 dilation (2,1) bias", make(Padding::reflect, 3, 2, 2, 1, 2, 2, 2, 1, true),
       Shape{2, 2, 6, 7}},
      {"reflect pad = size - 1", make(Padding::reflect, 3, 3, 2, 3, 1, 1, 1, 1, false), Shape{2, 2, 3, 4}},
      {"1x1 direct path, bias", make(Padding::zeros, 1, 1, 0, 0, 1, 1, 1, 1, true), Shape{3, 4, 3, 5}},
      {"1x1 stride 2 (im2col path)", make(Padding::zeros, 1, 1, 0, 0, 2, 2, 1, 1, true), Shape{2, 2, 5, 5}},
  };
  for (const Variant& v : variants) {
    INFO(v.what);
    Conv2d conv("conv_gc", v.o);
    LayerParams params(conv, v.in);
    const Tensor x = random_tensor(v.in, 5);
    check_gradients(conv, params, x, RunContext{Mode::train});
  }
}

TEST_CASE("conv2d: larger layers match a direct seven-loop reference, forward and backward, every mode") {
  // 8 channels of 32x32 with a 3x3 kernel: the dx GEMM runs in more than one channel block, and N = 10
  // spans several batch chunks of the weight gradient.
  const Shape in{10, 8, 32, 32};
  const Tensor x = random_tensor(in, 41);
  for (Padding mode : {Padding::valid, Padding::zeros, Padding::circular, Padding::replicate, Padding::reflect}) {
    for (int64_t stride : {1, 2}) {
      INFO("padding mode " << static_cast<int>(mode) << ", stride " << stride);
      const bool padded = mode != Padding::valid;
      Conv2dOptions o = conv_opts(3, 3, 3, mode, padded ? 2 : 0, padded ? 1 : 0, true);
      o.stride_h = o.stride_w = stride;
      o.dilation_h = 2;
      Conv2d conv("conv_ref", o);
      LayerParams params(conv, in);
      Tensor y, dx;
      conv.forward(x, y, RunContext{});
      const Tensor dy = random_tensor(y.shape(), 42);
      conv.backward(x, y, dy, &dx, RunContext{});
      const Reference ref = reference_conv(x, params.value("weight"), params.value("bias"), o, dy);
      REQUIRE(static_cast<size_t>(y.numel()) == ref.y.size());
      // Float sums of up to ~10^4 terms against double: a real error is O(1), rounding stays below 1e-5.
      auto max_error = [](const float* actual, const std::vector<double>& expected) {
        double worst = 0;
        for (size_t i = 0; i < expected.size(); ++i)
          worst = std::max(worst, std::abs(actual[i] - expected[i]) / (1.0 + std::abs(expected[i])));
        return worst;
      };
      CHECK(max_error(y.data(), ref.y) < 1e-4);
      CHECK(max_error(dx.data(), ref.dx) < 1e-4);
      CHECK(max_error(params.grad("weight").data(), ref.dw) < 1e-4);
      // db = sum of dy over batch and positions.
      std::vector<double> db(3, 0.0);
      const int64_t pq = y.shape().h() * y.shape().w();
      for (int64_t n = 0; n < in.n(); ++n)
        for (int64_t k = 0; k < 3; ++k)
          for (int64_t i = 0; i < pq; ++i) db[static_cast<size_t>(k)] += dy[(n * 3 + k) * pq + i];
      CHECK(max_error(params.grad("bias").data(), db) < 1e-4);
    }
  }
}

TEST_CASE("conv2d in bf16: the seven-loop reference on bf16-rounded inputs, weights and output gradient") {
  // bf16 rounds x, W (forward), W and dy (input gradient), x and dy (weight gradient) and sums in fp32: so the
  // double reference of the ROUNDED tensors is matched to fp32 rounding, and the unrounded one is not.
  // Odd channel counts (5 in, 3 out) leave half-empty pairs; 1x1 takes the direct path.
  struct Case {
    Padding mode;
    int64_t kernel, stride, pad, dilation;
  };
  const Case cases[] = {{Padding::valid, 3, 1, 0, 2},     {Padding::zeros, 3, 1, 1, 1}, {Padding::zeros, 3, 2, 1, 1},
                        {Padding::reflect, 3, 1, 2, 2},   {Padding::circular, 3, 2, 1, 1},
                        {Padding::valid, 1, 1, 0, 1},     {Padding::zeros, 5, 1, 2, 1}};
  const Shape in{9, 5, 13, 12};
  const Tensor x = random_tensor(in, 51);
  auto rounded = [](const Tensor& t) {
    Tensor r(t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) r[i] = round_bf16(t[i]);
    return r;
  };
  auto max_error = [](const float* actual, const std::vector<double>& expected) {
    double worst = 0;
    for (size_t i = 0; i < expected.size(); ++i)
      worst = std::max(worst, std::abs(actual[i] - expected[i]) / (1.0 + std::abs(expected[i])));
    return worst;
  };
  RunContext ctx{Mode::train};
  ctx.precision = Precision::bf16;
  for (const Case& c : cases) {
    INFO("mode " << static_cast<int>(c.mode) << ", kernel " << c.kernel << ", stride " << c.stride);
    Conv2dOptions o = conv_opts(3, c.kernel, c.kernel, c.mode, c.pad, c.pad, true);
    o.stride_h = o.stride_w = c.stride;
    o.dilation_h = o.dilation_w = c.dilation;
    Conv2d conv("conv_bf16", o);
    LayerParams params(conv, in);
    Tensor y, dx;
    conv.forward(x, y, ctx);
    const Tensor dy = random_tensor(y.shape(), 52);
    conv.backward(x, y, dy, &dx, ctx);
    std::vector<float> w = params.value("weight"), wr(w.size());
    for (size_t i = 0; i < w.size(); ++i) wr[i] = round_bf16(w[i]);
    const Reference ref = reference_conv(rounded(x), wr, params.value("bias"), o, rounded(dy));
    const Reference exact = reference_conv(x, w, params.value("bias"), o, dy);
    REQUIRE(static_cast<size_t>(y.numel()) == ref.y.size());
    CHECK(max_error(y.data(), ref.y) < 1e-5);
    CHECK(max_error(dx.data(), ref.dx) < 1e-5);
    CHECK(max_error(params.grad("weight").data(), ref.dw) < 1e-5);
    CHECK(max_error(y.data(), exact.y) > 1e-4);  // the rounding did happen
    CHECK(max_error(params.grad("weight").data(), exact.dw) > 1e-4);
    std::vector<double> db(3, 0.0);
    const int64_t pq = y.shape().h() * y.shape().w();
    for (int64_t n = 0; n < in.n(); ++n)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t i = 0; i < pq; ++i) db[static_cast<size_t>(k)] += round_bf16(dy[(n * 3 + k) * pq + i]);
    CHECK(max_error(params.grad("bias").data(), db) < 1e-5);
  }
}

TEST_CASE("conv2d: the fp32 weight gradient is one FMA chain per weight over each chunk's samples and pixels") {
  // Bitwise against std::fma chains: per chunk of Conv2d::kBatchChunk samples one chain over its samples and
  // pixels (p, q) in order from 0, the chunks added in index order. lenet5's conv1 shape (1 channel, 20 output
  // channels, 5x5: the transposed product, lanes over the weights) and a 3-channel one with 32 outputs (lanes
  // over the channels) must both follow it, so the orientation never changes a bit.
  struct Case {
    int64_t C, K;
    bool bias;
  };
  // A plain struct, not a structured binding: clang 14 (the sanitizer build) cannot capture a binding in
  // CAPTURE's lambda.
  for (const Case& one : {Case{1, 20, true}, Case{1, 20, false}, Case{3, 32, true}}) {
    const int64_t C = one.C, K = one.K;
    const bool bias = one.bias;
    CAPTURE(C);
    CAPTURE(K);
    const Shape in{Conv2d::kBatchChunk + 3, C, 13, 12};
    const int64_t R = 5, S = 5, P = 9, Q = 8;
    Conv2d conv("conv1", conv_opts(K, R, S, Padding::valid, 0, 0, bias));
    LayerParams params(conv, in);
    const Tensor x = random_tensor(in, 51);
    Tensor y, dx;
    conv.forward(x, y, RunContext{});
    REQUIRE(y.shape() == Shape{in.n(), K, P, Q});
    const Tensor dy = random_tensor(y.shape(), 52);
    conv.backward(x, y, dy, &dx, RunContext{});
    std::vector<float> dw(static_cast<size_t>(K * C * R * S)), db(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = -1; i < C * R * S; ++i) {  // i = -1: the bias
        const int64_t c = i / (R * S), r = i / S % R, s = i % S;
        float total = 0.0f;
        for (int64_t n0 = 0; n0 < in.n(); n0 += Conv2d::kBatchChunk) {
          float acc = 0.0f;
          for (int64_t n = n0; n < std::min(in.n(), n0 + Conv2d::kBatchChunk); ++n)
            for (int64_t p = 0; p < P; ++p)
              for (int64_t q = 0; q < Q; ++q) {
                const float xv = i < 0 ? 1.0f : x[((n * C + c) * in.h() + p + r) * in.w() + q + s];
                acc = std::fma(xv, dy[((n * K + k) * P + p) * Q + q], acc);
              }
          total = n0 == 0 ? acc : total + acc;
        }
        (i < 0 ? db[static_cast<size_t>(k)] : dw[static_cast<size_t>(k * C * R * S + i)]) = total;
      }
    CHECK(std::memcmp(params.grad("weight").data(), dw.data(), dw.size() * sizeof(float)) == 0);
    if (bias) CHECK(std::memcmp(params.grad("bias").data(), db.data(), db.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("conv2d: backward without dx still accumulates the same parameter gradients") {
  Conv2d conv("conv1", conv_opts(4, 3, 3, Padding::reflect, 1, 1, true));
  const Tensor x = random_tensor(Shape{3, 2, 5, 5}, 21);
  LayerParams params(conv, x.shape());
  Tensor y, dx;
  conv.forward(x, y, RunContext{});
  const Tensor dy = random_tensor(y.shape(), 22);
  conv.backward(x, y, dy, &dx, RunContext{});
  const auto w_once = params.grad("weight");
  const auto b_once = params.grad("bias");
  for (auto& g : params.grads) std::fill(g.begin(), g.end(), 0.0f);
  conv.backward(x, y, dy, nullptr, RunContext{});
  CHECK(params.grad("weight") == w_once);
  CHECK(params.grad("bias") == b_once);
  // And a second call adds the same amount again (+=, not =).
  conv.backward(x, y, dy, nullptr, RunContext{});
  for (size_t i = 0; i < b_once.size(); ++i) CHECK(params.grad("bias")[i] == doctest::Approx(2 * b_once[i]));
}

TEST_CASE("conv2d: forward and backward are bit-identical with 1, 2 and 4 threads") {
  struct Run {
    Tensor y, dx;
    std::vector<float> dw, db;
  };
  auto run = [](const Conv2dOptions& o, const Shape& in, int threads) {
    ThreadLimit limit(threads);
    Conv2d conv("conv1", o);
    LayerParams params(conv, in);
    const Tensor x = random_tensor(in, 31);
    Run r;
    conv.forward(x, r.y, RunContext{});
    const Tensor dy = random_tensor(r.y.shape(), 32);
    conv.backward(x, r.y, dy, &r.dx, RunContext{});
    r.dw = params.grad("weight");
    r.db = params.grad("bias");
    return r;
  };
  Conv2dOptions general = conv_opts(6, 3, 3, Padding::reflect, 1, 1, true);
  Conv2dOptions one_by_one = conv_opts(6, 1, 1, Padding::zeros, 0, 0, true);
  // N = 20 spans several fixed chunks of Conv2d::kBatchChunk samples, each split into row groups (3 channels
  // of 3 kernel rows: a group per channel and row; 5 channels of 1x1: a group per channel).
  static_assert(Conv2d::kBatchChunk < 10 && Conv2d::kChannelBlocks >= 3);
  for (const auto& c : {std::pair{general, Shape{20, 3, 9, 9}}, std::pair{one_by_one, Shape{20, 5, 6, 6}}}) {
    const auto& o = c.first;  // not a structured binding: clang 14 cannot capture those in INFO's lambda
    const auto& in = c.second;
    const Run one = run(o, in, 1);
    for (int threads : {2, 4}) {
      INFO("threads " << threads << ", kernel " << o.kernel_h);
      const Run many = run(o, in, threads);
      REQUIRE(many.y.shape() == one.y.shape());
      REQUIRE(many.dx.shape() == one.dx.shape());
      CHECK(std::memcmp(many.y.data(), one.y.data(), sizeof(float) * static_cast<size_t>(one.y.numel())) == 0);
      CHECK(std::memcmp(many.dx.data(), one.dx.data(), sizeof(float) * static_cast<size_t>(one.dx.numel())) == 0);
      CHECK(many.dw == one.dw);
      CHECK(many.db == one.db);
    }
  }
}

TEST_CASE("conv2d: output shape, parameter specs and FLOPs") {
  // cifar10_quick conv2: 32 -> 32, 5x5 pad 2 at 16x16.
  Conv2d conv2("conv2", conv_opts(32, 5, 5, Padding::zeros, 2, 2, true));
  const Shape in{100, 32, 16, 16};
  CHECK(conv2.output_shape(in) == Shape({100, 32, 16, 16}));
  const auto specs = conv2.param_specs(in);
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "weight");
  CHECK(specs[0].shape == Shape({32, 32, 5, 5}));
  CHECK(specs[0].role == ParamRole::learnable);
  CHECK(specs[0].init == Init::pytorch_default);
  CHECK(specs[0].fan_in == 800);
  CHECK(specs[0].fan_out == 800);
  CHECK(specs[0].weight_decay);
  CHECK(specs[1].name == "bias");
  CHECK(specs[1].shape == Shape({32}));
  CHECK(specs[1].init == Init::pytorch_default);
  CHECK(specs[1].fan_in == 800);
  CHECK_FALSE(specs[1].weight_decay);
  CHECK(conv2.forward_flops(in) == 2.0 * 100 * 32 * 256 * 800 + 100.0 * 32 * 256);

  Conv2dOptions o = conv_opts(4, 3, 2, Padding::zeros, 1, 0, false);
  o.stride_h = 2;
  o.dilation_w = 3;
  o.weight_init = Init::kaiming_normal;
  Conv2d c("c", o);
  // P = floor((9 + 2 - 2 - 1) / 2) + 1 = 5, Q = floor((10 - 3 - 1) / 1) + 1 = 7.
  CHECK(c.output_shape(Shape{2, 3, 9, 10}) == Shape({2, 4, 5, 7}));
  const auto s2 = c.param_specs(Shape{2, 3, 9, 10});
  REQUIRE(s2.size() == 1);
  CHECK(s2[0].init == Init::kaiming_normal);
  CHECK(s2[0].fan_in == 18);
  CHECK(s2[0].fan_out == 24);
  CHECK(c.forward_flops(Shape{2, 3, 9, 10}) == 2.0 * 2 * 4 * 35 * 18);
  CHECK(c.type() == "conv2d");
}

TEST_CASE("conv2d: shape errors name the layer, the expectation and the shape found") {
  Conv2d conv("conv1", conv_opts(8, 5, 5, Padding::zeros, 0, 0, true));
  CHECK(thrown_message<Error>([&] {
          conv.output_shape(Shape{2, 784});
        }) == "conv1: expected a rank-4 input (N, C, H, W), got (N=2, F=784)");
  CHECK_THROWS_AS(conv.output_shape(Shape{2, 784}), ShapeError);
  CHECK_THROWS_AS(conv.output_shape(Shape{1, 1, 3, 3}), ShapeError);
  CHECK(thrown_message<Error>([&] { conv.output_shape(Shape{1, 1, 3, 3}); }).starts_with("conv1: kernel 5x5"));
  CHECK(thrown_message<Error>([&] { conv.output_shape(Shape{1, 1, 3, 3}); }).find("(N=1, C=1, H=3, W=3)") !=
        std::string::npos);

  Tensor y;
  CHECK(thrown_message<Error>([&] {
          conv.forward(Tensor(Shape{2, 3, 32, 32}), y, RunContext{});
        }) == "conv1: forward/backward called before bind");

  LayerParams params(conv, Shape{2, 3, 32, 32});
  CHECK_THROWS_AS(conv.forward(Tensor(Shape{2, 1, 28, 28}), y, RunContext{}), ShapeError);
  CHECK(thrown_message<Error>([&] {
          conv.forward(Tensor(Shape{2, 1, 28, 28}), y, RunContext{});
        }) == "conv1: expected input with 3 channels, got (N=2, C=1, H=28, W=28)");
  CHECK_THROWS_AS(conv.output_shape(Shape{2, 1, 28, 28}), ShapeError);

  const Tensor x(Shape{2, 3, 8, 8});
  conv.forward(x, y, RunContext{});
  Tensor dx;
  CHECK(thrown_message<Error>([&] {
          conv.backward(x, y, Tensor(Shape{2, 8, 4, 5}), &dx, RunContext{});
        }) == "conv1: expected output gradient (N=2, C=8, H=4, W=4), got (N=2, C=8, H=4, W=5)");

  Conv2d refl("refl", conv_opts(1, 3, 3, Padding::reflect, 2, 1, true));
  CHECK(refl.output_shape(Shape{1, 1, 3, 3}) == Shape({1, 1, 5, 3}));
  CHECK_THROWS_AS(refl.output_shape(Shape{1, 1, 2, 3}), ShapeError);
  CHECK(thrown_message<Error>([&] {
          refl.output_shape(Shape{1, 1, 2, 3});
        }) == "refl: padding 'reflect' needs pad < input size, got pad 2x1 for input (N=1, C=1, H=2, W=3)");
  Conv2d circ("circ", conv_opts(1, 3, 3, Padding::circular, 1, 3, true));
  CHECK(circ.output_shape(Shape{1, 1, 3, 3}) == Shape({1, 1, 3, 7}));
  CHECK_THROWS_AS(circ.output_shape(Shape{1, 1, 3, 2}), ShapeError);
  CHECK(thrown_message<Error>([&] { circ.output_shape(Shape{1, 1, 3, 2}); })
            .starts_with("circ: padding 'circular' needs pad <="));
}

TEST_CASE("conv2d: option errors are ConfigErrors naming the layer") {
  auto bad = [](Conv2dOptions o) { return thrown_message<Error>([&] { Conv2d("convX", o); }); };
  Conv2dOptions o = conv_opts(4, 3, 3, Padding::zeros, 1, 1, true);
  CHECK_THROWS_AS(Conv2d("convX", o = conv_opts(0, 3, 3, Padding::zeros, 1, 1, true)), ConfigError);
  CHECK(bad(conv_opts(0, 3, 3, Padding::zeros, 1, 1, true)) == "convX: expected out_channels >= 1, got 0");
  CHECK(bad(conv_opts(4, 3, 0, Padding::zeros, 1, 1, true)) == "convX: expected kernel >= 1, got 3x0");
  CHECK(bad(conv_opts(4, 3, 3, Padding::zeros, -1, 1, true)) == "convX: expected pad >= 0, got -1x1");
  CHECK(bad(conv_opts(4, 3, 3, Padding::valid, 0, 1, true)) == "convX: padding 'valid' expects pad 0, got 0x1");
  o = conv_opts(4, 3, 3, Padding::zeros, 1, 1, true);
  o.stride_w = 0;
  CHECK(bad(o) == "convX: expected stride >= 1, got 1x0");
  o.stride_w = 1;
  o.dilation_h = 0;
  CHECK(bad(o) == "convX: expected dilation >= 1, got 0x1");
}

TEST_CASE("conv2d: from_config reads every key, applies defaults and rejects unknown ones") {
  auto full = LayerConfig::parse(R"({"name": "conv1", "type": "conv2d", "out_channels": 16, "kernel": [3, 2],
      "stride": 2, "pad": [1, 0], "dilation": [1, 2], "padding": "reflect", "bias": false, "init": "xavier_uniform"})",
                                 "model.json");
  auto layer = Conv2d::from_config(full);
  REQUIRE(layer);
  CHECK(layer->name() == "conv1");
  CHECK(layer->type() == "conv2d");
  const auto& o = dynamic_cast<Conv2d&>(*layer).options();
  CHECK(o.out_channels == 16);
  CHECK(o.kernel_h == 3);
  CHECK(o.kernel_w == 2);
  CHECK(o.stride_h == 2);
  CHECK(o.stride_w == 2);
  CHECK(o.pad_h == 1);
  CHECK(o.pad_w == 0);
  CHECK(o.dilation_h == 1);
  CHECK(o.dilation_w == 2);
  CHECK(o.padding == Padding::reflect);
  CHECK_FALSE(o.bias);
  CHECK(o.weight_init == Init::xavier_uniform);

  auto minimal = LayerConfig::parse(R"({"name": "c", "type": "conv2d", "out_channels": 8, "kernel": 5})");
  const auto minimal_layer = Conv2d::from_config(minimal);  // kept alive: options() refers into it (ASan)
  const auto& d = dynamic_cast<Conv2d&>(*minimal_layer).options();
  CHECK(d.kernel_h == 5);
  CHECK(d.kernel_w == 5);
  CHECK(d.stride_h == 1);
  CHECK(d.stride_w == 1);
  CHECK(d.pad_h == 0);
  CHECK(d.pad_w == 0);
  CHECK(d.dilation_h == 1);
  CHECK(d.dilation_w == 1);
  CHECK(d.padding == Padding::zeros);
  CHECK(d.bias);
  CHECK(d.weight_init == Init::pytorch_default);

  auto typo = LayerConfig::parse(R"({"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel": 5, "kernal": 3})",
                                 "model.json");
  CHECK_THROWS_AS(Conv2d::from_config(typo), ConfigError);
  CHECK(thrown_message<Error>([&] { Conv2d::from_config(typo); }) ==
        "model.json: layer 'conv1' (conv2d): unknown field(s) 'kernal'");

  auto no_kernel = LayerConfig::parse(R"({"name": "conv1", "type": "conv2d", "out_channels": 8})", "model.json");
  CHECK(thrown_message<Error>([&] { Conv2d::from_config(no_kernel); }) ==
        "model.json: layer 'conv1' (conv2d): missing required field 'kernel'");
  auto bad_mode = LayerConfig::parse(
      R"({"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel": 3, "padding": "mirror"})", "model.json");
  CHECK_THROWS_AS(Conv2d::from_config(bad_mode), ConfigError);
  CHECK(thrown_message<Error>([&] { Conv2d::from_config(bad_mode); }).find("conv1") != std::string::npos);
  auto bad_valid = LayerConfig::parse(
      R"({"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel": 3, "padding": "valid", "pad": 1})");
  CHECK(thrown_message<Error>([&] { Conv2d::from_config(bad_valid); }) ==
        "spec: layer 'conv1' (conv2d): padding 'valid' expects pad 0, got 1x1");
  auto zero_kernel =
      LayerConfig::parse(R"({"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel": [0, 3]})", "model.json");
  CHECK(thrown_message<Error>([&] { Conv2d::from_config(zero_kernel); }) ==
        "model.json: layer 'conv1' (conv2d): expected kernel >= 1, got 0x3");
}

// Timing, not a check: skipped by default. Run with
//   stride_tests -tc='conv2d: benchmark*' --no-skip
// (bench/conv2d_vs_torch.py runs it next to the same shapes in PyTorch). Reports the fastest of 20
// iterations, which is the least disturbed by other processes on a shared machine.
TEST_CASE("conv2d: benchmark cifar10_quick conv shapes forward+backward" * doctest::skip()) {
  struct Bench {
    const char* name;
    Shape in;
    int64_t k, kernel, pad;
  };
  const Bench benches[] = {{"conv1", Shape{100, 3, 32, 32}, 32, 5, 2},
                           {"conv2", Shape{100, 32, 16, 16}, 32, 5, 2},
                           {"conv3", Shape{100, 32, 8, 8}, 64, 5, 2}};
  for (const Bench& b : benches)
    for (int threads : {1, 2}) {
      ThreadLimit limit(threads);
      Conv2d conv(b.name, conv_opts(b.k, b.kernel, b.kernel, Padding::zeros, b.pad, b.pad, true));
      LayerParams params(conv, b.in);
      const Tensor x = random_tensor(b.in, 1);
      Tensor y, dx;
      conv.forward(x, y, RunContext{});
      const Tensor dy = random_tensor(y.shape(), 2);
      conv.backward(x, y, dy, &dx, RunContext{});
      double fwd = 1e30, bwd = 1e30;
      for (int i = 0; i < 20; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        conv.forward(x, y, RunContext{});
        const auto t1 = std::chrono::steady_clock::now();
        conv.backward(x, y, dy, &dx, RunContext{});
        const auto t2 = std::chrono::steady_clock::now();
        fwd = std::min(fwd, std::chrono::duration<double, std::milli>(t1 - t0).count());
        bwd = std::min(bwd, std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
      MESSAGE("stride " << std::string(b.name) << " " << b.in.str() << " -> " << b.k << ", " << threads
                        << " threads: forward " << fwd << " ms, backward " << bwd << " ms, total " << fwd + bwd
                        << " ms");
    }
}
