#include "layers/conv2d.hpp"

#include <algorithm>
#include <cassert>
#include <tuple>

#include "framework/core/errors.hpp"
#include "framework/core/gemm.hpp"
#include "framework/core/init.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

std::string pair_str(int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); }

// Throws ConfigError "<prefix>expected ..., got ..." for an option out of range. from_config passes the spec
// file's context so the message names the file as well as the layer.
void check_options(const Conv2dOptions& o, const std::string& prefix) {
  if (o.out_channels < 1)
    throw ConfigError(prefix + "expected out_channels >= 1, got " + std::to_string(o.out_channels));
  if (o.kernel_h < 1 || o.kernel_w < 1)
    throw ConfigError(prefix + "expected kernel >= 1, got " + pair_str(o.kernel_h, o.kernel_w));
  if (o.stride_h < 1 || o.stride_w < 1)
    throw ConfigError(prefix + "expected stride >= 1, got " + pair_str(o.stride_h, o.stride_w));
  if (o.dilation_h < 1 || o.dilation_w < 1)
    throw ConfigError(prefix + "expected dilation >= 1, got " + pair_str(o.dilation_h, o.dilation_w));
  if (o.pad_h < 0 || o.pad_w < 0) throw ConfigError(prefix + "expected pad >= 0, got " + pair_str(o.pad_h, o.pad_w));
  if (o.padding == Padding::valid && (o.pad_h != 0 || o.pad_w != 0))
    throw ConfigError(prefix + "padding 'valid' expects pad 0, got " + pair_str(o.pad_h, o.pad_w));
}

// The input index read at padded-space index i (may be negative or >= n), or -1 for a zero. The caller
// guarantees i is within [-pad, n + pad), and pad <= n (circular) or pad < n (reflect).
int64_t map_index(int64_t i, int64_t n, Padding mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case Padding::valid:
    case Padding::zeros:
      return -1;
    case Padding::circular:
      return i < 0 ? i + n : i - n;
    case Padding::replicate:
      return i < 0 ? 0 : n - 1;
    case Padding::reflect:
      return i < 0 ? -i : 2 * (n - 1) - i;
  }
  return -1;
}

// The boundary treatment lives in two small kernels (pad, and its adjoint fold), so im2col and col2im below
// are plain strided copies that every padding mode shares.
struct PadTables {
  const int64_t* row_src;  // (Hp): input row copied by padded row i, or -1 for zeros
  const int64_t* col_src;  // (Wp): input column copied by padded column j, or -1 for zeros
};

// One sample. x: (C, H, W) -> xp: (C, Hp, Wp), the border filled as the padding mode says.
void pad_sample(const float* x, float* xp, const ConvGeom& g, const PadTables& t) {
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w, pw = g.pad_w, W = g.W;
  for (int64_t c = 0; c < g.C; ++c) {
    const float* xc = x + c * g.H * W;
    float* xpc = xp + c * Hp * Wp;
    for (int64_t i = 0; i < Hp; ++i) {
      float* dst = xpc + i * Wp;
      const int64_t hi = t.row_src[i];
      if (hi < 0) {
        std::fill(dst, dst + Wp, 0.0f);
        continue;
      }
      const float* src = xc + hi * W;
      for (int64_t j = 0; j < pw; ++j) dst[j] = t.col_src[j] >= 0 ? src[t.col_src[j]] : 0.0f;
      for (int64_t j = 0; j < W; ++j) dst[pw + j] = src[j];
      for (int64_t j = pw + W; j < Wp; ++j) dst[j] = t.col_src[j] >= 0 ? src[t.col_src[j]] : 0.0f;
    }
  }
}

// One sample, the adjoint of pad_sample. dxp: (C, Hp, Wp) -> dx: (C, H, W) overwritten; the gradient of a
// padded element flows to the input element it copies (circular/replicate/reflect) or is dropped (zeros).
void fold_sample(const float* dxp, float* dx, const ConvGeom& g, const PadTables& t) {
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w, ph = g.pad_h, pw = g.pad_w, W = g.W;
  for (int64_t c = 0; c < g.C; ++c) {
    float* dxc = dx + c * g.H * W;
    const float* dxpc = dxp + c * Hp * Wp;
    // The interior first, as a copy, then the border rows and columns added in a fixed order.
    for (int64_t h = 0; h < g.H; ++h) {
      const float* src = dxpc + (h + ph) * Wp + pw;
      float* dst = dxc + h * W;
      for (int64_t j = 0; j < W; ++j) dst[j] = src[j];
    }
    if (g.padding == Padding::zeros || g.padding == Padding::valid) continue;
    for (int64_t i = 0; i < Hp; ++i) {
      const int64_t hi = t.row_src[i];
      const float* src = dxpc + i * Wp;
      float* dst = dxc + hi * W;
      const bool border_row = i < ph || i >= ph + g.H;
      for (int64_t j = 0; j < Wp; ++j) {
        const bool border_col = j < pw || j >= pw + W;
        if (border_row || border_col) dst[t.col_src[j]] += src[j];
      }
    }
  }
}

// One sample. xp: (C, Hp, Wp) -> col: (C*R*S, P*Q); row (c, r, s), column (p, q) holds
// xp[c, p*stride_h + r*dilation_h, q*stride_w + s*dilation_w].
void im2col(const float* xp, int64_t Hp, int64_t Wp, float* col, const ConvGeom& g) {
  const int64_t P = g.P, Q = g.Q, sh = g.stride_h, sw = g.stride_w;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const float* src = xp + (c * Hp + r * g.dilation_h) * Wp + s * g.dilation_w;
        float* out = col + ((c * g.R + r) * g.S + s) * P * Q;
        if (sw == 1) {
          for (int64_t p = 0; p < P; ++p, out += Q) {
            const float* in = src + p * sh * Wp;
            for (int64_t q = 0; q < Q; ++q) out[q] = in[q];
          }
        } else {
          for (int64_t p = 0; p < P; ++p, out += Q) {
            const float* in = src + p * sh * Wp;
            for (int64_t q = 0; q < Q; ++q) out[q] = in[q * sw];
          }
        }
      }
}

// One sample, the adjoint of im2col for `channels` consecutive channels. col: (channels*R*S, P*Q) ->
// dxp: (channels, Hp, Wp) += each entry at the element it was read from. The caller zeroes dxp.
void col2im_add(const float* col, float* dxp, int64_t Hp, int64_t Wp, const ConvGeom& g, int64_t channels) {
  const int64_t P = g.P, Q = g.Q, sh = g.stride_h, sw = g.stride_w;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        float* dst = dxp + (c * Hp + r * g.dilation_h) * Wp + s * g.dilation_w;
        const float* in = col + ((c * g.R + r) * g.S + s) * P * Q;
        if (sw == 1) {
          for (int64_t p = 0; p < P; ++p, in += Q) {
            float* d = dst + p * sh * Wp;
            for (int64_t q = 0; q < Q; ++q) d[q] += in[q];
          }
        } else {
          for (int64_t p = 0; p < P; ++p, in += Q) {
            float* d = dst + p * sh * Wp;
            for (int64_t q = 0; q < Q; ++q) d[q * sw] += in[q];
          }
        }
      }
}

// Channels per block of the dx GEMM: about 64K floats of dcol, so it stays in L2 until col2im reads it.
int64_t dcol_block_channels(const ConvGeom& g) {
  return std::clamp<int64_t>(65536 / std::max<int64_t>(1, g.R * g.S * g.pq()), 1, g.C);
}

}  // namespace

Conv2d::Conv2d(std::string name, Conv2dOptions options) : Layer(std::move(name)), opt_(options) {
  check_options(opt_, this->name() + ": ");
}

std::unique_ptr<Layer> Conv2d::from_config(const LayerConfig& c) {
  Conv2dOptions o;
  o.out_channels = c.get_int("out_channels");
  if (!c.has("kernel")) throw ConfigError(c.context() + "missing required field 'kernel'");
  std::tie(o.kernel_h, o.kernel_w) = c.get_pair("kernel", {0, 0});
  std::tie(o.stride_h, o.stride_w) = c.get_pair("stride", {1, 1});
  std::tie(o.pad_h, o.pad_w) = c.get_pair("pad", {0, 0});
  std::tie(o.dilation_h, o.dilation_w) = c.get_pair("dilation", {1, 1});
  const std::string padding = c.get_choice("padding", "zeros", {"valid", "zeros", "circular", "replicate", "reflect"});
  if (padding == "valid") o.padding = Padding::valid;
  if (padding == "zeros") o.padding = Padding::zeros;
  if (padding == "circular") o.padding = Padding::circular;
  if (padding == "replicate") o.padding = Padding::replicate;
  if (padding == "reflect") o.padding = Padding::reflect;
  o.bias = c.get_bool("bias", true);
  o.weight_init = parse_init(c.get_string("init", "pytorch"), c.context());
  c.finish();
  check_options(o, c.context());
  return std::make_unique<Conv2d>(c.name(), o);
}

ConvGeom Conv2d::geometry(const Shape& in) const {
  const std::string& n = name();
  if (in.rank != 4) throw ShapeError(n + ": expected a rank-4 input (N, C, H, W), got " + in.str());
  if (in.n() < 1 || in.c() < 1 || in.h() < 1 || in.w() < 1)
    throw ShapeError(n + ": expected a non-empty input, got " + in.str());
  if (in_channels_ != 0 && in.c() != in_channels_)
    throw ShapeError(n + ": expected input with " + std::to_string(in_channels_) + " channels, got " + in.str());
  if (opt_.padding == Padding::reflect && (opt_.pad_h >= in.h() || opt_.pad_w >= in.w()))
    throw ShapeError(n + ": padding 'reflect' needs pad < input size, got pad " + pair_str(opt_.pad_h, opt_.pad_w) +
                     " for input " + in.str());
  if (opt_.padding == Padding::circular && (opt_.pad_h > in.h() || opt_.pad_w > in.w()))
    throw ShapeError(n + ": padding 'circular' needs pad <= input size, got pad " + pair_str(opt_.pad_h, opt_.pad_w) +
                     " for input " + in.str());
  ConvGeom g;
  g.N = in.n();
  g.C = in.c();
  g.H = in.h();
  g.W = in.w();
  g.K = opt_.out_channels;
  g.R = opt_.kernel_h;
  g.S = opt_.kernel_w;
  g.stride_h = opt_.stride_h;
  g.stride_w = opt_.stride_w;
  g.pad_h = opt_.pad_h;
  g.pad_w = opt_.pad_w;
  g.dilation_h = opt_.dilation_h;
  g.dilation_w = opt_.dilation_w;
  g.padding = opt_.padding;
  // As torch.nn.Conv2d: floor((H + 2*pad - dilation*(R-1) - 1) / stride) + 1.
  const int64_t span_h = g.H + 2 * g.pad_h - g.dilation_h * (g.R - 1) - 1;
  const int64_t span_w = g.W + 2 * g.pad_w - g.dilation_w * (g.S - 1) - 1;
  if (span_h < 0 || span_w < 0)
    throw ShapeError(n + ": kernel " + pair_str(g.R, g.S) + " (dilation " + pair_str(g.dilation_h, g.dilation_w) +
                     ", pad " + pair_str(g.pad_h, g.pad_w) + ") does not fit input " + in.str() +
                     ": the output would be empty");
  g.P = span_h / g.stride_h + 1;
  g.Q = span_w / g.stride_w + 1;
  return g;
}

Shape Conv2d::output_shape(const Shape& in) const {
  const ConvGeom g = geometry(in);
  return Shape{g.N, g.K, g.P, g.Q};
}

std::vector<ParamSpec> Conv2d::param_specs(const Shape& in) const {
  const ConvGeom g = geometry(in);
  std::vector<ParamSpec> specs;
  ParamSpec w;
  w.name = "weight";
  w.shape = Shape{g.K, g.C, g.R, g.S};
  w.role = ParamRole::learnable;
  w.init = opt_.weight_init;
  w.fan_in = g.C * g.R * g.S;
  w.fan_out = g.K * g.R * g.S;
  specs.push_back(w);
  if (opt_.bias) {
    ParamSpec b;
    b.name = "bias";
    b.shape = Shape{g.K};
    b.role = ParamRole::learnable;
    b.init = Init::pytorch_default;  // torch.nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias too
    b.fan_in = g.C * g.R * g.S;
    b.fan_out = g.K * g.R * g.S;
    b.weight_decay = false;
    specs.push_back(b);
  }
  return specs;
}

double Conv2d::forward_flops(const Shape& in) const {
  const ConvGeom g = geometry(in);
  const double outputs = static_cast<double>(g.N) * static_cast<double>(g.K) * static_cast<double>(g.pq());
  return 2.0 * outputs * static_cast<double>(g.crs()) + (opt_.bias ? outputs : 0.0);
}

void Conv2d::bind(std::span<const ParamView> params) {
  const size_t expected = opt_.bias ? 2 : 1;
  if (params.size() != expected)
    throw ShapeError(name() + ": expected " + std::to_string(expected) + " parameter views, got " +
                     std::to_string(params.size()));
  const int64_t krs = opt_.out_channels * opt_.kernel_h * opt_.kernel_w;
  const auto wsize = static_cast<int64_t>(params[0].value.size());
  if (wsize == 0 || wsize % krs != 0)
    throw ShapeError(name() + ": expected a weight view of K*C*R*S elements (a multiple of " + std::to_string(krs) +
                     "), got " + std::to_string(wsize));
  if (static_cast<int64_t>(params[0].grad.size()) != wsize)
    throw ShapeError(name() + ": expected a weight gradient view of " + std::to_string(wsize) + " elements, got " +
                     std::to_string(params[0].grad.size()));
  if (opt_.bias && (static_cast<int64_t>(params[1].value.size()) != opt_.out_channels ||
                    static_cast<int64_t>(params[1].grad.size()) != opt_.out_channels))
    throw ShapeError(name() + ": expected bias views of " + std::to_string(opt_.out_channels) + " elements, got " +
                     std::to_string(params[1].value.size()) + " and " + std::to_string(params[1].grad.size()));
  in_channels_ = wsize / krs;
  weight_ = params[0];
  bias_ = opt_.bias ? params[1] : ParamView{};
  prepared_for_ = Shape{};  // channels may have changed
}

bool Conv2d::direct_1x1() const {
  return opt_.kernel_h == 1 && opt_.kernel_w == 1 && opt_.stride_h == 1 && opt_.stride_w == 1 && opt_.pad_h == 0 &&
         opt_.pad_w == 0;
}

const ConvGeom& Conv2d::prepare(const Shape& in) {
  if (in_channels_ == 0) throw Error(name() + ": forward/backward called before bind");
  const ConvGeom g = geometry(in);
  const Shape sample = in.with_batch(1);
  if (sample == prepared_for_) {
    geom_.N = g.N;
    return geom_;
  }
  geom_ = g;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  row_src_.resize(static_cast<size_t>(Hp));
  col_src_.resize(static_cast<size_t>(Wp));
  for (int64_t i = 0; i < Hp; ++i) row_src_[static_cast<size_t>(i)] = map_index(i - g.pad_h, g.H, g.padding);
  for (int64_t j = 0; j < Wp; ++j) col_src_[static_cast<size_t>(j)] = map_index(j - g.pad_w, g.W, g.padding);
  // One scratch set per worker slot; max_threads() covers a ThreadLimit above the arena size.
  scratch_.resize(static_cast<size_t>(std::max(worker_slots(), max_threads())));
  const bool padded = g.pad_h > 0 || g.pad_w > 0;
  for (Scratch& sc : scratch_) {
    if (padded) {
      sc.padded.resize(Shape{g.C, Hp, Wp});
      sc.dpadded.resize(Shape{g.C, Hp, Wp});
    }
    if (!direct_1x1()) {
      sc.col.resize(Shape{g.crs(), g.pq()});
      sc.dcol.resize(Shape{dcol_block_channels(g) * g.R * g.S, g.pq()});
    }
  }
  prepared_for_ = sample;
  return geom_;
}

// x: (N, C, H, W) -> y: (N, K, P, Q)
void Conv2d::forward(const Tensor& x, Tensor& y, const RunContext& /*ctx*/) {
  const ConvGeom& g = prepare(x.shape());
  y.resize(Shape{g.N, g.K, g.P, g.Q});
  const PadTables t{row_src_.data(), col_src_.data()};
  const bool direct = direct_1x1(), padded = g.pad_h > 0 || g.pad_w > 0;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  const float* w = weight_.value.data();
  const float* b = opt_.bias ? bias_.value.data() : nullptr;
  const int64_t CRS = g.crs(), PQ = g.pq(), chw = g.C * g.H * g.W;
  const float* xd = x.data();
  float* yd = y.data();
  // One sample per task: each y sample is written by exactly one task, by one gemm call whose arguments do
  // not depend on the thread count.
  parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    const size_t slot = static_cast<size_t>(worker_slot());
    assert(slot < scratch_.size());
    Scratch& sc = scratch_[slot];
    float* col = sc.col.data();
    for (int64_t n = begin; n < end; ++n) {
      const float* xn = xd + n * chw;
      float* yn = yd + n * g.K * PQ;
      if (!direct) {
        if (padded) pad_sample(xn, sc.padded.data(), g, t);
        im2col(padded ? sc.padded.data() : xn, Hp, Wp, col, g);
      }
      // y_n (K, PQ) = W (K, CRS) * col (CRS, PQ)
      gemm(false, false, g.K, PQ, CRS, 1.0f, w, CRS, direct ? xn : col, PQ, 0.0f, yn, PQ);
      if (b)
        for (int64_t k = 0; k < g.K; ++k) {
          float* row = yn + k * PQ;
          const float bk = b[k];
          for (int64_t i = 0; i < PQ; ++i) row[i] += bk;
        }
    }
  });
}

// dy: (N, K, P, Q) -> dx: (N, C, H, W) overwritten; dW (K, C, R, S) and db (K) accumulated.
void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx, const RunContext& /*ctx*/) {
  const ConvGeom& g = prepare(x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.K, g.P, g.Q}, dy.shape());
  if (dx) dx->resize(x.shape());
  const PadTables t{row_src_.data(), col_src_.data()};
  const bool direct = direct_1x1(), padded = g.pad_h > 0 || g.pad_w > 0;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  const int64_t CRS = g.crs(), PQ = g.pq(), chw = g.C * g.H * g.W;
  const int64_t wsize = g.K * CRS, psize = wsize + (opt_.bias ? g.K : 0);
  const int64_t chunks = chunk_count(g.N, kBatchChunk);
  const int64_t block = dcol_block_channels(g);
  partials_.resize(Shape{chunks, psize});
  const float* w = weight_.value.data();
  const float* xd = x.data();
  const float* dyd = dy.data();
  float* dxd = dx ? dx->data() : nullptr;
  float* part = partials_.data();

  // Fixed chunks of kBatchChunk samples: chunk c sums its samples' weight/bias gradients in sample order
  // into its own partial buffer; dx of each sample is written by the one task that owns the sample.
  parallel_chunks(g.N, kBatchChunk, [&](int64_t chunk, int64_t begin, int64_t end) {
    const size_t slot = static_cast<size_t>(worker_slot());
    assert(slot < scratch_.size());
    Scratch& sc = scratch_[slot];
    float* col = sc.col.data();
    float* dcol = sc.dcol.data();
    float* pw = part + chunk * psize;
    float* pb = pw + wsize;
    for (int64_t n = begin; n < end; ++n) {
      const float* xn = xd + n * chw;
      const float* dyn = dyd + n * g.K * PQ;
      const float first = n == begin ? 0.0f : 1.0f;
      if (!direct) {
        if (padded) pad_sample(xn, sc.padded.data(), g, t);
        im2col(padded ? sc.padded.data() : xn, Hp, Wp, col, g);
      }
      // dW_chunk^T (CRS, K) (+)= col (CRS, PQ) * dy_n^T (PQ, K); transposed because OpenBLAS runs this
      // orientation up to twice as fast for small K. The chunk reduction below transposes back.
      gemm(false, true, CRS, g.K, PQ, 1.0f, direct ? xn : col, PQ, dyn, PQ, first, pw, g.K);
      if (opt_.bias)
        for (int64_t k = 0; k < g.K; ++k) {
          const float* row = dyn + k * PQ;
          float s = 0.0f;
          for (int64_t i = 0; i < PQ; ++i) s += row[i];
          pb[k] = n == begin ? s : pb[k] + s;
        }
      if (dxd) {
        float* dxn = dxd + n * chw;
        if (direct) {
          // dx_n (C, HW) = W^T (C, K) * dy_n (K, HW)
          gemm(true, false, g.C, PQ, g.K, 1.0f, w, CRS, dyn, PQ, 0.0f, dxn, PQ);
        } else {
          // dcol (CRS, PQ) = W^T (CRS, K) * dy_n (K, PQ), scattered back onto the input. Done in fixed blocks
          // of channels so each block of dcol is still in cache when col2im reads it.
          float* dxp = padded ? sc.dpadded.data() : dxn;
          std::fill(dxp, dxp + g.C * Hp * Wp, 0.0f);
          for (int64_t c0 = 0; c0 < g.C; c0 += block) {
            const int64_t cb = std::min(block, g.C - c0), rows = cb * g.R * g.S;
            gemm(true, false, rows, PQ, g.K, 1.0f, w + c0 * g.R * g.S, CRS, dyn, PQ, 0.0f, dcol, PQ);
            col2im_add(dcol, dxp + c0 * Hp * Wp, Hp, Wp, g, cb);
          }
          if (padded) fold_sample(dxp, dxn, g, t);
        }
      }
    }
  });

  // Chunks are added in index order, per element, so the sum is the same for any thread count.
  float* gw = weight_.grad.data();
  float* gb = opt_.bias ? bias_.grad.data() : nullptr;
  parallel_for(psize, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      // Weight element (k, j) of (K, CRS) sits at j*K + k of the transposed partials; bias k at wsize + k.
      const int64_t src = i < wsize ? (i % CRS) * g.K + i / CRS : i;
      float acc = part[src];
      for (int64_t c = 1; c < chunks; ++c) acc += part[c * psize + src];
      if (i < wsize)
        gw[i] += acc;
      else
        gb[i - wsize] += acc;
    }
  });
}

}  // namespace stride
