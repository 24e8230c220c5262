#pragma once
// 2-D convolution (cross-correlation, as torch.nn.Conv2d and Caffe define it) with stride, padding, dilation,
// optional bias and the lecture's boundary treatments. Input channels are inferred from the input shape.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/cpu.hpp"
#include "framework/core/kernels/kernels.hpp"
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

  // Samples per fixed block of the weight-gradient reduction (independent of the thread count). Each block
  // sums its samples' gradients in one FMA chain per weight and costs one partial copy of the weight gradient;
  // the blocks are added in index order.
  static constexpr int64_t kBatchChunk = 8;
  // The weight gradient of a block (fp32 and bf16) is also split into fixed row groups: kChannelBlocks groups
  // of input channels, or for fewer channels each channel's kernel rows in up to ceil(2 kChannelBlocks / C)
  // ranges (their rows of the partial are disjoint, so the bits do not change). A micro-batch of 16 has 2
  // blocks of samples, too few tasks for 16 threads (docs/performance.md, "Many-core projection"), and blocks
  // of fewer samples would cost a partial copy each.
  static constexpr int64_t kChannelBlocks = 8;
  // ... but a range keeps at least this many rows (about a register tile of the product; thinner groups ran
  // cifar10_quick's conv1 at half the speed).
  static constexpr int64_t kMinGroupRows = 10;
  // A layer with few output channels and a short reduction per pixel (lenet5's conv1: 20 channels, 25 weights
  // and the bias) runs its fp32 weight gradient transposed: dW (K, CRS + bias) = dy (K, PQ) * columns^T
  // (PQ, CRS + bias), the column source transposed once per image, so the vector lanes run over the
  // (CRS + bias) weights instead of the K channels. Each weight is the same FMA chain (fma(a, b, c) =
  // fma(b, a, c)), so the bits do not change. Only for at most this many rows (CRS + bias) of the source.
  static constexpr int64_t kTransposedMaxRows = 64;

 private:
  ConvGeom geometry(const Shape& in) const;  // validates `in` (throws ShapeError)
  // Validates x and, when the sample shape changes, plans the passes and sizes the per-thread scratch.
  const ConvGeom& prepare(const Shape& in);
  // One image's column source for the forward and weight-gradient products: its row crs starts at
  // source + boff_[crs] (docs/design.md, "Kernels"). Returns the source (x_n itself on the 1x1 path).
  struct Scratch;
  // The rows of input channels [c0, c1) only: row crs of them at source + boff_[crs] - boff_[c0 R S].
  const float* column_source(const float* xn, Scratch& sc) const { return column_source(xn, sc, 0, geom_.C); }
  const float* column_source(const float* xn, Scratch& sc, int64_t c0, int64_t c1) const;
  // The image a column source reads from input channel c0 on: x_n itself with zeros top/left rows and
  // columns around it (zeros padding), or its padded copy in sc.padded (other boundaries). The fp32 and bf16
  // sources below are built from it alike and differ only in the kernel that fills them (out left unset).
  struct SourceImage {
    const float* img;
    int64_t Hs, Ws, top, left;
  };
  SourceImage source_image(const float* xn, Scratch& sc, int64_t c0) const;
  kernels::ShiftedSource shifted_columns(const SourceImage& im, int64_t channels) const;
  kernels::Im2col im2col_columns(const SourceImage& im, int64_t channels) const;
  // The implicit input gradient's source: dy_n shifted, dx_top() rows of zeros above it (out left unset).
  kernels::ShiftedSource dx_shifted_source(const float* dyn) const;
  // The strided input gradient's last step: dcol (C*R*S, P*Q) added onto a zeroed (padded) plane, whose
  // border is then folded back onto dx_n (overwritten).
  void scatter_columns(const float* dcol, float* dxn, Scratch& sc) const;
  // The fixed row groups of a batch chunk's weight gradient (kChannelBlocks), fp32 and bf16: input channels
  // [c0, c1) and their rows [r0, r1) of the (C*R*S) rows; the bias row goes with the last group.
  struct RowGroup {
    int64_t c0, c1, r0, r1;
  };
  int64_t wgrad_groups() const;
  RowGroup wgrad_group(int64_t group, int64_t groups) const;
  // The fp32 weight-gradient partials (partials_) when wgrad_transposed_.
  void backward_weights_transposed(const Tensor& x, const Tensor& dy);
  // bf16 (RunContext::precision): the same products on bf16 pairs (framework/core/bf16.hpp), pairs running
  // over input channels (forward), output channels (input gradient) and pixels (weight gradient).
  void prepare_bf16();
  const uint32_t* pair_source(const float* xn, Scratch& sc) const;
  void forward_bf16(const Tensor& x, Tensor& y);
  void backward_bf16(const Tensor& x, const Tensor& dy, Tensor* dx);

  Conv2dOptions opt_;
  int64_t in_channels_ = 0;  // 0 until bound
  ParamView weight_{}, bias_{};

  // The plan for the prepared sample shape.
  Shape prepared_for_{};  // input shape (batch 1) the plan and scratch were built for
  ConvGeom geom_{};
  bool prepad_ = false;        // a non-zero boundary (circular, replicate, reflect): pad each image first
  bool direct_ = false;        // 1x1, stride 1, no padding: the image is its own column source
  bool shifted_ = false;       // vertical stride 1: the shifted column source; else an explicit im2col
  int64_t src_rows_ = 0;       // rows per (channel, kernel column) of the shifted source
  int64_t col_size_ = 0;       // floats of one image's column source
  bool wgrad_transposed_ = false;  // the fp32 weight gradient runs transposed (kTransposedMaxRows)
  bool dx_implicit_ = false;   // stride 1: the input gradient is a convolution of the padded output gradient
  bool dx_direct_ = false;     // 1x1, stride 1, no padding: the input gradient is W^T dy
  int64_t dx_rows_ = 0, dx_h_ = 0, dx_w_ = 0;  // shifted dy: rows per (k, s); the gradient plane it yields
  int64_t dsrc_size_ = 0;      // floats of one image's dy source (implicit) or dcol (explicit)
  std::vector<int64_t> boff_;     // (C*R*S): row offsets of the forward column source
  std::vector<int64_t> dx_boff_;  // (K*R*S): row offsets of the shifted dy source
  // Rows of a product whose shifted source has a zero border, and the output columns where each is not
  // +0 (conv2d.cpp, BorderRows::set); the products skip them elsewhere. Empty: nothing to skip.
  struct BorderRows {
    std::vector<int32_t> begin, end;  // per product row
    int64_t columns = 0;
    kernels::LiveRows plan;           // for the path in use, made at its first use
    void set(const ConvGeom& g, int64_t groups, int64_t top, int64_t src_h, int64_t out_h, int64_t out_w);
    const kernels::LiveRows* planned(const kernels::KernelTable& k);
  };
  BorderRows border_, dx_border_;  // the forward product (C*R*S rows), the implicit input gradient's (K*R*S)
  // Rows of zeros above dy in its shifted source: the input gradient's row h reads dy row h + r' dh - top.
  int64_t dx_top() const { return (geom_.R - 1) * geom_.dilation_h - (prepad_ ? 0 : geom_.pad_h); }
  // For each row (column) of the padded sample, the input row (column) it copies, or -1 for a zero;
  // (H + 2 pad_h) and (W + 2 pad_w) entries.
  std::vector<int64_t> row_src_, col_src_;
  // Scratch of one worker slot; none of it carries results from one task to the next.
  struct Scratch {
    Tensor padded;   // (C, H + 2 pad_h, W + 2 pad_w): the image with its boundary filled in (prepad_)
    Tensor dpadded;  // same shape: the input gradient before the border is folded back
    Tensor col;      // one image's column source; in backward then its shifted dy (implicit input gradient)
                     // or dcol (explicit)
    Tensor dyt;      // (P*Q, round_up(K, 16)): dy of one image transposed for the weight gradient
    std::vector<const float*> rows;  // (C*R*S + 8) row pointers into col (and ones_, zeros_) for the weight gradient
    std::vector<float> colt;  // (P*Q, ldt): one image's column source transposed (wgrad_transposed_)
    std::vector<const float*> dy_rows;  // (K) rows of one image's dy (the transposed weight gradient)
    // bf16 only: a pair source (forward columns, or dy's for the input gradient), the weight gradient's
    // column rows as pairs over pixels, and two planes of conversion scratch.
    std::vector<uint32_t> pairs, apack;
    std::vector<const uint32_t*> arows;  // rows of apack
    std::vector<float> tmp2;
  };
  std::vector<Scratch> scratch_;  // per worker slot
  Tensor wpack_;      // the weight packed for the forward product
  Tensor wdx_;        // the flipped weight (C, K*R*S) of the implicit input gradient, row-major
  Tensor wdxpack_;    // the weight packed for the input-gradient product
  Tensor ones_;       // (P*Q) ones: the bias gradient is the weight gradient of a constant row
  Tensor zeros_;      // (P*Q) zeros: the rows that pad a transposed column source to whole 8 x 8 blocks
  Tensor partials_;   // (chunks, (C*R*S + bias) * K): dW^T and db partial sums per batch chunk
  Tensor dyt_;        // (N, P*Q, ldt): every sample's dy transposed once, for all the row groups that read it
  std::vector<uint32_t> dyt2_;  // bf16: (N, ceil(P*Q / 2), ldt), every sample's dy^T as pairs of pixels
  // bf16 plan: row offsets of the paired forward source ((C+1)/2 * R * S) and of the paired dy source
  // ((K+1)/2 * R * S), and the weights packed as pairs for the forward and input-gradient products.
  Shape bf16_prepared_for_{};
  std::vector<int64_t> boff2_, dx_boff2_;
  BorderRows border2_, dx_border2_;  // over channel pairs: ((C+1)/2 * R * S) and ((K+1)/2 * R * S) rows
  // Every column row starts at an even offset and has an even length: the weight gradient converts the
  // column source once (a shifted source shares each value among R rows) and reads its rows in place.
  bool wgrad_in_place_ = false;
  std::vector<uint32_t> wpack2_, wdxpack2_;
  std::vector<float> wre_;  // the weight reordered so pairs are adjacent before packing
  // The weight values wpack2_ and wdxpack2_ were packed from: the micro-batches of a step share one weight,
  // so they are packed once per step (an exact comparison decides; nothing else changes them).
  std::vector<float> wpack2_of_, wdxpack2_of_;
  Isa packed_for_isa_ = Isa::generic;  // panel heights depend on the path
};

}  // namespace stride
