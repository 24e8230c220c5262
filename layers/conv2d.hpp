#pragma once
// 2-D convolution (cross-correlation, as torch.nn.Conv2d and Caffe define it) with stride, padding, dilation,
// optional bias and the lecture's boundary treatments. Input channels are inferred from the input shape.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/layer.hpp"
#include "framework/core/tensor.hpp"

namespace stride {

class LayerConfig;

// How the input is extended beyond its border (torch.nn.Conv2d's padding_mode, plus "valid" = no padding).
enum class Padding {
  valid,      // no padding at all (pad must be 0)
  zeros,      // x outside the image is 0
  circular,   // the image wraps around: x[-1] = x[H-1]; needs pad <= H
  replicate,  // the border pixel is repeated: x[-1] = x[0]
  reflect,    // mirrored without repeating the border: x[-1] = x[1]; needs pad < H
};

struct Conv2dOptions {
  int64_t out_channels = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  Padding padding = Padding::zeros;
  bool bias = true;
  Init weight_init = Init::pytorch_default;
};

// Sizes of one convolution for one input shape: x (N, C, H, W) * w (K, C, R, S) -> y (N, K, P, Q).
struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t K = 0, R = 0, S = 0, P = 0, Q = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  Padding padding = Padding::zeros;
  int64_t crs() const { return C * R * S; }
  int64_t pq() const { return P * Q; }
};

class Conv2d final : public Layer {
 public:
  // Throws ConfigError naming the layer when an option is out of range.
  Conv2d(std::string name, Conv2dOptions options);

  // Keys: out_channels (required), kernel (required, int or [h, w]), stride, pad, dilation (int or [h, w]),
  // padding ("valid" | "zeros" | "circular" | "replicate" | "reflect"), bias (bool), init (see parse_init).
  static std::unique_ptr<Layer> from_config(const LayerConfig& c);

  std::string_view type() const override { return "conv2d"; }
  const Conv2dOptions& options() const { return opt_; }

  Shape output_shape(const Shape& in) const override;
  // weight (K, C, R, S) and, with bias, bias (K).
  std::vector<ParamSpec> param_specs(const Shape& in) const override;
  double forward_flops(const Shape& in) const override;
  void bind(std::span<const ParamView> params) override;

  void forward(const Tensor& x, Tensor& y, const RunContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, const RunContext& ctx) override;

  // Samples per fixed block of the weight-gradient reduction (independent of the thread count). Small, so a
  // batch of 100 splits into 25 tasks that balance well over a few threads; each block costs one partial
  // copy of the weight gradient.
  static constexpr int64_t kBatchChunk = 4;

 private:
  ConvGeom geometry(const Shape& in) const;  // validates `in` (throws ShapeError)
  // Validates x, builds the boundary tables and sizes the per-thread scratch when the sample shape changes.
  const ConvGeom& prepare(const Shape& in);
  // 1x1, stride 1, no padding: the input sample is already the column matrix, so im2col is skipped.
  bool direct_1x1() const;

  Conv2dOptions opt_;
  int64_t in_channels_ = 0;  // 0 until bound
  ParamView weight_{}, bias_{};

  // Scratch of one worker slot; none of it carries results from one task to the next.
  struct Scratch {
    Tensor padded;   // (C, H + 2 pad_h, W + 2 pad_w): the sample with its boundary filled in
    Tensor dpadded;  // same shape: the input gradient before the border is folded back
    Tensor col;      // (C*R*S, P*Q)
    Tensor dcol;     // (channel block * R*S, P*Q)
  };

  Shape prepared_for_{};  // input shape (batch 1) the tables and scratch were built for
  ConvGeom geom_{};
  // For each row (column) of the padded sample, the input row (column) it copies, or -1 for a zero;
  // (H + 2 pad_h) and (W + 2 pad_w) entries.
  std::vector<int64_t> row_src_, col_src_;
  std::vector<Scratch> scratch_;  // per worker slot
  Tensor partials_;               // (chunks, C*R*S*K + K): dW^T and db partial sums per batch chunk
};

}  // namespace stride
