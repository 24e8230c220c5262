#include "layers/conv2d.hpp"

#include <algorithm>
#include <cassert>
#include <tuple>

#include "framework/core/bf16.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
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

// The im2col geometry of one sample's Hp x Wp source (src, top, left and out left to the caller): the
// forward columns, and the strided input gradient's column-to-image fold.
kernels::Im2col padded_input_geometry(const ConvGeom& g, int64_t Hp, int64_t Wp) {
  kernels::Im2col geo;
  geo.C = g.C;
  geo.Hs = Hp;
  geo.Ws = Wp;
  geo.R = g.R;
  geo.S = g.S;
  geo.dh = g.dilation_h;
  geo.dw = g.dilation_w;
  geo.sh = g.stride_h;
  geo.sw = g.stride_w;
  geo.P = g.P;
  geo.Q = g.Q;
  return geo;
}

// Adds the batch chunks' weight and bias gradient partials (each chunk psize floats: the transposed
// (CRS, K) weight partial, then K bias partials) into the gradients. Chunks are added in index order, per
// element, so the sum is the same for any thread count.
// With `by_channel` (the transposed weight gradient) a partial is (K, CRS + bias) instead: row k holds channel
// k's weights, then its bias.
void add_chunk_partials(const float* part, int64_t chunks, int64_t psize, int64_t K, int64_t CRS, float* gw,
                        float* gb, bool by_channel) {
  const int64_t wsize = K * CRS, ld = psize / K;
  parallel_for(psize, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      // Weight element (k, j) of (K, CRS) sits at j*K + k of the transposed partials; bias k at CRS*K + k.
      const int64_t src = by_channel ? (i < wsize ? i / CRS * ld + i % CRS : (i - wsize) * ld + CRS)
                          : i < wsize ? (i % CRS) * K + i / CRS
                                      : i;
      float acc = part[src];
      for (int64_t c = 1; c < chunks; ++c) acc += part[c * psize + src];
      if (i < wsize)
        gw[i] += acc;
      else
        gb[i - wsize] += acc;
    }
  });
}

// KernelTable::pack_a, split over (row panel, block of 256 columns) tasks: a copy, so the same bytes. A weight
// is packed once per micro-batch, and done serially these packs were most of the serial time the many-core
// projection found in cifar10_quick's step (docs/performance.md).
void pack_a_parallel(const kernels::KernelTable& k, const float* src, int64_t rs, int64_t cs, int64_t M, int64_t K,
                     float* dst) {
  constexpr int64_t kColumns = 256;
  const int64_t blocks = chunk_count(K, kColumns);
  parallel_for(k.a_panels(M) * blocks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t % blocks;
      k.pack_a_part(src, rs, cs, M, K, t / blocks, b * kColumns, std::min(K, (b + 1) * kColumns), dst);
    }
  });
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

const ConvGeom& Conv2d::prepare(const Shape& in) {
  if (in_channels_ == 0) throw Error(name() + ": forward/backward called before bind");
  const ConvGeom g = geometry(in);
  const Shape sample = in.with_batch(1);
  // One scratch set per worker slot; max_threads() covers a ThreadLimit above the arena size, and a larger
  // arena than the one of the last pass re-plans.
  const size_t slots = static_cast<size_t>(std::max(worker_slots(), max_threads()));
  if (sample == prepared_for_ && scratch_.size() >= slots) {
    geom_.N = g.N;
    return geom_;
  }
  geom_ = g;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  const bool padded = g.pad_h > 0 || g.pad_w > 0;
  row_src_.resize(static_cast<size_t>(Hp));
  col_src_.resize(static_cast<size_t>(Wp));
  for (int64_t i = 0; i < Hp; ++i) row_src_[static_cast<size_t>(i)] = map_index(i - g.pad_h, g.H, g.padding);
  for (int64_t j = 0; j < Wp; ++j) col_src_[static_cast<size_t>(j)] = map_index(j - g.pad_w, g.W, g.padding);

  // Forward and weight gradient: where row (c, r, s) of the implicit im2col matrix lives.
  prepad_ = padded && g.padding != Padding::zeros && g.padding != Padding::valid;
  const bool unit_stride = g.stride_h == 1 && g.stride_w == 1;
  direct_ = g.R == 1 && g.S == 1 && unit_stride && !padded;
  shifted_ = !direct_ && g.stride_h == 1;
  const int64_t CRS = g.crs(), PQ = g.pq();
  boff_.resize(static_cast<size_t>(CRS));
  src_rows_ = g.P + (g.R - 1) * g.dilation_h;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t crs = (c * g.R + r) * g.S + s;
        boff_[static_cast<size_t>(crs)] = direct_    ? c * PQ
                                          : shifted_ ? ((c * g.S + s) * src_rows_ + r * g.dilation_h) * g.Q
                                                     : crs * PQ;
      }
  col_size_ = direct_ ? 0 : shifted_ ? g.C * g.S * src_rows_ * g.Q : CRS * PQ;
  border_ = {};
  if (shifted_ && !prepad_ && g.pad_h > 0) border_.set(g, g.C, g.pad_h, g.H, g.P, g.Q);  // zeros padding only

  // Input gradient. Stride 1: dx[c][h][w] = sum over (k, r', s') of W[k][c][R-1-r'][S-1-s'] *
  // dy[k][h + r' dh - top][w + s' dw - left], top = (R-1) dh - pad_h (left likewise): a convolution of dy,
  // zero-extended, with the flipped weight, on the same kernels as the forward pass. It yields the H x W
  // gradient directly (zeros padding) or the padded plane's (other boundaries), which is then folded.
  dx_direct_ = direct_;
  dx_implicit_ = unit_stride && !direct_;
  dx_h_ = prepad_ ? Hp : g.H;
  dx_w_ = prepad_ ? Wp : g.W;
  dx_rows_ = dx_h_ + (g.R - 1) * g.dilation_h;
  dx_boff_.clear();
  dx_border_ = {};
  if (dx_implicit_) {
    dx_boff_.resize(static_cast<size_t>(g.K * g.R * g.S));
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s)
          dx_boff_[static_cast<size_t>((k * g.R + r) * g.S + s)] = ((k * g.S + s) * dx_rows_ + r * g.dilation_h) * dx_w_;
    dx_border_.set(g, g.K, dx_top(), g.P, dx_h_, dx_w_);
  }
  dsrc_size_ = dx_direct_ ? 0 : dx_implicit_ ? g.K * g.S * dx_rows_ * dx_w_ : CRS * PQ;

  scratch_.resize(std::max(scratch_.size(), slots));
  for (Scratch& sc : scratch_) {
    if (prepad_) sc.padded.resize(Shape{g.C, Hp, Wp});
    if (padded && !dx_implicit_) sc.dpadded.resize(Shape{g.C, Hp, Wp});
    if (prepad_ && dx_implicit_) sc.dpadded.resize(Shape{g.C, Hp, Wp});
    // The backward pass builds dy's source in the same buffer once the weight gradient has read the columns,
    // so one image's working set stays in L2.
    sc.col.resize(Shape{std::max<int64_t>(std::max(col_size_, dsrc_size_), 1)});
    sc.dyt.resize(Shape{PQ, kernels::wgrad_ldt(g.K)});
    sc.rows.assign(static_cast<size_t>(CRS + 8), nullptr);
    sc.dy_rows.assign(static_cast<size_t>(g.K), nullptr);
  }
  ones_.resize(Shape{PQ});
  ones_.fill(1.0f);
  zeros_.resize(Shape{PQ});
  zeros_.fill(0.0f);
  // Vector FMAs per pixel of the weight gradient, 16 lanes: ceil(K / 16) per source row, or transposed
  // ceil(rows / 16) per channel.
  const int64_t wrows = CRS + (opt_.bias ? 1 : 0);
  wgrad_transposed_ = wrows <= kTransposedMaxRows && (wrows + 15) / 16 * g.K < (g.K + 15) / 16 * wrows;
  prepared_for_ = sample;
  return geom_;
}

Conv2d::SourceImage Conv2d::source_image(const float* xn, Scratch& sc, int64_t c0) const {
  const ConvGeom& g = geom_;
  if (!prepad_) return SourceImage{xn + c0 * g.H * g.W, g.H, g.W, g.pad_h, g.pad_w};
  pad_sample(xn, sc.padded.data(), g, PadTables{row_src_.data(), col_src_.data()});
  const int64_t Hs = g.H + 2 * g.pad_h, Ws = g.W + 2 * g.pad_w;
  return SourceImage{sc.padded.data() + c0 * Hs * Ws, Hs, Ws, 0, 0};
}

kernels::ShiftedSource Conv2d::shifted_columns(const SourceImage& im, int64_t channels) const {
  const ConvGeom& g = geom_;
  return kernels::ShiftedSource{.src = im.img, .C = channels, .Hs = im.Hs, .Ws = im.Ws, .S = g.S, .dw = g.dilation_w,
                                .sw = g.stride_w, .top = im.top, .left = im.left, .rows = src_rows_, .Q = g.Q};
}

kernels::Im2col Conv2d::im2col_columns(const SourceImage& im, int64_t channels) const {
  kernels::Im2col s = padded_input_geometry(geom_, im.Hs, im.Ws);
  s.src = im.img;
  s.C = channels;
  s.top = im.top;
  s.left = im.left;
  return s;
}

kernels::ShiftedSource Conv2d::dx_shifted_source(const float* dyn) const {
  const ConvGeom& g = geom_;
  return kernels::ShiftedSource{.src = dyn, .C = g.K, .Hs = g.P, .Ws = g.Q, .S = g.S, .dw = g.dilation_w, .sw = 1,
                                .top = dx_top(), .left = (g.S - 1) * g.dilation_w - (prepad_ ? 0 : g.pad_w),
                                .rows = dx_rows_, .Q = dx_w_};
}

void Conv2d::scatter_columns(const float* dcol, float* dxn, Scratch& sc) const {
  const ConvGeom& g = geom_;
  const bool padded = g.pad_h > 0 || g.pad_w > 0;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  float* dxp = padded ? sc.dpadded.data() : dxn;
  std::fill(dxp, dxp + g.C * Hp * Wp, 0.0f);
  kernels::kernels().col2im_add(padded_input_geometry(g, Hp, Wp), dcol, dxp);
  if (padded) fold_sample(dxp, dxn, g, PadTables{row_src_.data(), col_src_.data()});
}

const float* Conv2d::column_source(const float* xn, Scratch& sc, int64_t c0, int64_t c1) const {
  if (direct_) return xn + c0 * geom_.pq();
  const kernels::KernelTable& k = kernels::kernels();
  const SourceImage im = source_image(xn, sc, c0);
  if (shifted_) {
    kernels::ShiftedSource s = shifted_columns(im, c1 - c0);
    s.out = sc.col.data();
    k.shifted_source(s);
  } else {
    kernels::Im2col s = im2col_columns(im, c1 - c0);
    s.out = sc.col.data();
    k.im2col(s);
  }
  return sc.col.data();
}

// A shifted source is zero in the rows above and below its image (the padding; for the input gradient, the
// R - 1 - pad rows around dy): product row (c, r, s), c < groups, reads source row o + r dh - top for output
// row o, so it is +0 unless 0 <= o + r dh - top < src_h. Records, per row, the output columns (o * out_w + q)
// where it is not. The products then skip the row elsewhere (kernels::LiveRows): a skipped step would add
// W * (+0), so no result changes. lenet5's conv2 (5x5, no padding) spent 56% of its input gradient's FMAs on
// dy's border; a block of 16 columns spans two of its 12-pixel rows, so about half of those go.
void Conv2d::BorderRows::set(const ConvGeom& g, int64_t groups, int64_t top, int64_t src_h, int64_t out_h,
                             int64_t out_w) {
  begin.resize(static_cast<size_t>(groups * g.R * g.S));
  end.resize(begin.size());
  for (int64_t c = 0; c < groups; ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t o0 = std::clamp<int64_t>(top - r * g.dilation_h, 0, out_h);
      const int64_t o1 = std::clamp<int64_t>(top - r * g.dilation_h + src_h, o0, out_h);
      for (int64_t s = 0; s < g.S; ++s) {
        const size_t i = static_cast<size_t>((c * g.R + r) * g.S + s);
        begin[i] = static_cast<int32_t>(o0 * out_w);
        end[i] = static_cast<int32_t>(o1 * out_w);
      }
    }
  columns = out_h * out_w;
  plan = {};
}

const kernels::LiveRows* Conv2d::BorderRows::planned(const kernels::KernelTable& k) {
  if (begin.empty()) return nullptr;
  const auto K = static_cast<int64_t>(begin.size());
  if (plan.isa != k.isa || plan.N != columns || plan.K != K) k.plan_live_rows(begin.data(), end.data(), columns, K, plan);
  return &plan;
}

// x: (N, C, H, W) -> y: (N, K, P, Q)
void Conv2d::forward(const Tensor& x, Tensor& y, const RunContext& ctx) {
  if (ctx.precision == Precision::bf16) return forward_bf16(x, y);
  const ConvGeom& g = prepare(x.shape());
  y.resize(Shape{g.N, g.K, g.P, g.Q});
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t CRS = g.crs(), PQ = g.pq(), chw = g.C * g.H * g.W;
  wpack_.resize(Shape{g.K * CRS});
  pack_a_parallel(k, weight_.value.data(), CRS, 1, g.K, CRS, wpack_.data());
  const float* b = opt_.bias ? bias_.value.data() : nullptr;
  const kernels::LiveRows* live = border_.planned(k);
  const float* xd = x.data();
  float* yd = y.data();
  // One sample per task: each y sample is written by exactly one task, by kernel calls whose arguments do
  // not depend on the thread count.
  parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    const size_t slot = static_cast<size_t>(worker_slot());
    assert(slot < scratch_.size());
    Scratch& sc = scratch_[slot];
    for (int64_t n = begin; n < end; ++n) {
      // y_n (K, PQ) = bias + W (K, CRS) * columns (CRS, PQ); the bias starts each output's FMA chain.
      kernels::RowsGemm gm;
      gm.M = g.K;
      gm.N = PQ;
      gm.K = CRS;
      gm.a_packed = wpack_.data();
      gm.b = column_source(xd + n * chw, sc);
      gm.boff = boff_.data();
      gm.live = live;
      gm.c = yd + n * g.K * PQ;
      gm.ldc = PQ;
      gm.init = b ? kernels::Start::row_bias : kernels::Start::zero;
      gm.bias = b;
      k.rows_gemm(gm);
    }
  });
}

Conv2d::RowGroup Conv2d::wgrad_group(int64_t group, int64_t groups) const {
  const ConvGeom& g = geom_;
  const int64_t RS = g.R * g.S;
  if (g.C >= kChannelBlocks) {
    const int64_t c0 = g.C * group / groups, c1 = g.C * (group + 1) / groups;
    return RowGroup{c0, c1, c0 * RS, c1 * RS};
  }
  const int64_t per_channel = groups / g.C, c0 = group / per_channel, j = group % per_channel;
  return RowGroup{c0, c0 + 1, c0 * RS + g.R * j / per_channel * g.S, c0 * RS + g.R * (j + 1) / per_channel * g.S};
}

int64_t Conv2d::wgrad_groups() const {
  const ConvGeom& g = geom_;
  if (g.C >= kChannelBlocks) return kChannelBlocks;
  // 2 * kChannelBlocks row ranges in all where the kernel has the rows: 16 groups on 16 threads would leave one
  // thread the 17th (cifar10_quick's conv1: 3 channels x 5 ranges, 30 tasks per micro-batch of 16).
  return g.C * std::min({g.R, (2 * kChannelBlocks + g.C - 1) / g.C, std::max<int64_t>(1, g.R * g.S / kMinGroupRows)});
}

// dy: (N, K, P, Q) -> dx: (N, C, H, W) overwritten; dW (K, C, R, S) and db (K) accumulated.
void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx, const RunContext& ctx) {
  if (ctx.precision == Precision::bf16) return backward_bf16(x, dy, dx);
  const ConvGeom& g = prepare(x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.K, g.P, g.Q}, dy.shape());
  if (dx) dx->resize(x.shape());
  const kernels::KernelTable& k = kernels::kernels();
  const PadTables t{row_src_.data(), col_src_.data()};
  const int64_t CRS = g.crs(), PQ = g.pq(), chw = g.C * g.H * g.W, KRS = g.K * g.R * g.S;
  const int64_t rows = CRS + (opt_.bias ? 1 : 0);
  const int64_t psize = rows * g.K;
  const int64_t ldt = kernels::wgrad_ldt(g.K);
  const int64_t chunks = chunk_count(g.N, kBatchChunk);
  partials_.resize(Shape{chunks, psize});
  const float* w = weight_.value.data();
  if (dx && dx_implicit_) {
    // Flipped weight: wdx[c][(k, r', s')] = W[k][c][R-1-r'][S-1-s'].
    wdx_.resize(Shape{g.C, KRS});
    float* wf = wdx_.data();
    // A copy, one row c per task: once per micro-batch, and serial it was the largest serial stretch of
    // cifar10_quick's backward in the many-core projection.
    parallel_for(g.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t kk = 0; kk < g.K; ++kk)
          for (int64_t r = 0; r < g.R; ++r)
            for (int64_t s = 0; s < g.S; ++s)
              wf[c * KRS + (kk * g.R + r) * g.S + s] = w[((kk * g.C + c) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)];
    });
    wdxpack_.resize(Shape{g.C * KRS});
    pack_a_parallel(k, wf, KRS, 1, g.C, KRS, wdxpack_.data());
  } else if (dx) {
    // W^T: (C*R*S, K) for dx_n = W^T dy_n (1x1) or dcol = W^T dy_n (strided).
    wdxpack_.resize(Shape{CRS * g.K});
    pack_a_parallel(k, w, 1, CRS, CRS, g.K, wdxpack_.data());
  }
  const kernels::LiveRows* dx_live = dx && dx_implicit_ ? dx_border_.planned(k) : nullptr;
  const float* xd = x.data();
  const float* dyd = dy.data();
  float* dxd = dx ? dx->data() : nullptr;
  float* part = partials_.data();

  // Fixed chunks of kBatchChunk samples: chunk c sums its samples' weight/bias gradients in sample order into
  // its own partial buffer. Each chunk's work is split further into fixed row groups (independent of the
  // thread count): kChannelBlocks groups of input channels, or with fewer channels than that (a first layer)
  // each channel's kernel rows r in a few ranges. A group owns its rows (c, r, s) of the partial, the bias
  // row goes with the last, and every weight's FMA chain is the one the whole chunk would run.
  // dy_n^T (PQ, K) for every sample first: each of a chunk's row groups reads it (transposed per group, it
  // cost more than the products of a 3-channel first layer). A layer with few output channels and a short
  // reduction runs the same chains transposed instead (kTransposedMaxRows).
  if (wgrad_transposed_) {
    backward_weights_transposed(x, dy);
  } else {
    dyt_.resize(Shape{g.N, PQ * ldt});
    float* dyt_all = dyt_.data();
    parallel_for(g.N, 1, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) k.transpose(dyd + n * g.K * PQ, PQ, g.K, PQ, dyt_all + n * PQ * ldt, ldt);
    });
    const int64_t RS = g.R * g.S;
    const int64_t groups = wgrad_groups();
    parallel_for(chunks * groups, 1, [&](int64_t t0, int64_t t1) {
      const size_t slot = static_cast<size_t>(worker_slot());
      assert(slot < scratch_.size());
      Scratch& sc = scratch_[slot];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t chunk = t / groups, group = t % groups;
        const int64_t begin = chunk * kBatchChunk, end = std::min(g.N, begin + kBatchChunk);
        const auto [c0, c1, r0, r1] = wgrad_group(group, groups);
        const bool bias_row = opt_.bias && group + 1 == groups;
        float* pw = part + chunk * psize;
        for (int64_t n = begin; n < end; ++n) {
          // dW^T (CRS, K) and db (one more row) (+)= columns (CRS, PQ) * dy_n^T (PQ, K): one FMA chain per
          // weight over the chunk's pixels in order. The bias row reads ones.
          const float* src = column_source(xd + n * chw, sc, c0, c1);
          const int64_t shift = boff_[static_cast<size_t>(c0 * RS)];  // where channel c0's rows start
          for (int64_t i = r0; i < r1; ++i) sc.rows[static_cast<size_t>(i)] = src + (boff_[static_cast<size_t>(i)] - shift);
          if (bias_row) sc.rows[static_cast<size_t>(CRS)] = ones_.data();
          kernels::WgradGemm wg;
          wg.rows = r1 - r0 + (bias_row ? 1 : 0);
          wg.cols = g.K;
          wg.npix = PQ;
          wg.row_ptrs = sc.rows.data() + r0;
          wg.dyt = dyt_all + n * PQ * ldt;
          wg.ldt = ldt;
          wg.c = pw + r0 * g.K;
          wg.ldc = g.K;
          wg.init = n == begin ? kernels::Start::zero : kernels::Start::accumulate;
          k.wgrad_gemm(wg);
        }
      }
    });
  }

  // dx of each sample, written by the one task that owns the sample.
  if (dxd) parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    const size_t slot = static_cast<size_t>(worker_slot());
    assert(slot < scratch_.size());
    Scratch& sc = scratch_[slot];
    for (int64_t n = begin; n < end; ++n) {
      const float* dyn = dyd + n * g.K * PQ;
      float* dxn = dxd + n * chw;
      kernels::RowsGemm gm;
      gm.init = kernels::Start::zero;
      if (dx_direct_) {
        // dx_n (C, HW) = W^T (C, K) * dy_n (K, HW)
        gm.M = g.C;
        gm.N = PQ;
        gm.K = g.K;
        gm.a_packed = wdxpack_.data();
        gm.b = dyn;
        gm.ldb = PQ;
        gm.c = dxn;
        gm.ldc = PQ;
        k.rows_gemm(gm);
      } else if (dx_implicit_) {
        kernels::ShiftedSource s = dx_shifted_source(dyn);
        s.out = sc.col.data();
        k.shifted_source(s);
        float* out = prepad_ ? sc.dpadded.data() : dxn;
        gm.M = g.C;
        gm.N = dx_h_ * dx_w_;
        gm.K = KRS;
        gm.a_packed = wdxpack_.data();
        gm.b = sc.col.data();
        gm.boff = dx_boff_.data();
        gm.live = dx_live;
        gm.c = out;
        gm.ldc = dx_h_ * dx_w_;
        k.rows_gemm(gm);
        if (prepad_) fold_sample(out, dxn, g, t);
      } else {
        // Strided: dcol (CRS, PQ) = W^T (CRS, K) * dy_n (K, PQ), scattered back onto the (padded) input.
        gm.M = CRS;
        gm.N = PQ;
        gm.K = g.K;
        gm.a_packed = wdxpack_.data();
        gm.b = dyn;
        gm.ldb = PQ;
        gm.c = sc.col.data();
        gm.ldc = PQ;
        k.rows_gemm(gm);
        scatter_columns(sc.col.data(), dxn, sc);
      }
    }
  });

  add_chunk_partials(part, chunks, psize, g.K, CRS, weight_.grad.data(), opt_.bias ? bias_.grad.data() : nullptr,
                     wgrad_transposed_);
}

// The fp32 weight gradient with the lanes over the weights (wgrad_transposed_): per batch chunk, partial
// (K, CRS + bias) (+)= dy_n (K, PQ) * [columns_n; ones]^T (PQ, CRS + bias), one FMA chain per weight over the
// chunk's samples and pixels in order, as the untransposed product runs it. The chunk's channels may be split
// into fixed row groups (their rows of the partial are disjoint, so the bits do not change).
void Conv2d::backward_weights_transposed(const Tensor& x, const Tensor& dy) {
  const ConvGeom& g = geom_;
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t CRS = g.crs(), PQ = g.pq(), chw = g.C * g.H * g.W;
  const int64_t rows = CRS + (opt_.bias ? 1 : 0), rows8 = (rows + 7) / 8 * 8;
  const int64_t ldt = kernels::wgrad_ldt(rows);
  const int64_t chunks = chunk_count(g.N, kBatchChunk);
  const float* xd = x.data();
  const float* dyd = dy.data();
  // Each group transposes the image's column source itself (one pass before the groups, over every sample,
  // left the batch's transposed sources to L3: conv1 of lenet5 ran at 33% of the peak instead of 42-50%), so
  // groups stay wide: one per 32 channels (lenet5's conv1: one task per chunk).
  const int64_t groups = std::clamp<int64_t>(g.K / 32, 1, kChannelBlocks);
  float* part = partials_.data();
  const int64_t psize = rows * g.K;
  parallel_for(chunks * groups, 1, [&](int64_t t0, int64_t t1) {
    Scratch& sc = scratch_[static_cast<size_t>(worker_slot())];
    sc.colt.resize(static_cast<size_t>(PQ * ldt));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t chunk = t / groups, group = t % groups;
      const int64_t begin = chunk * kBatchChunk, end = std::min(g.N, begin + kBatchChunk);
      const int64_t k0 = g.K * group / groups, k1 = g.K * (group + 1) / groups;
      for (int64_t n = begin; n < end; ++n) {
        const float* src = column_source(xd + n * chw, sc);
        for (int64_t i = 0; i < CRS; ++i) sc.rows[static_cast<size_t>(i)] = src + boff_[static_cast<size_t>(i)];
        for (int64_t i = CRS; i < rows8; ++i)
          sc.rows[static_cast<size_t>(i)] = i == CRS && opt_.bias ? ones_.data() : zeros_.data();
        k.transpose_rows(sc.rows.data(), rows8, PQ, sc.colt.data(), ldt);
        for (int64_t kk = k0; kk < k1; ++kk) sc.dy_rows[static_cast<size_t>(kk - k0)] = dyd + (n * g.K + kk) * PQ;
        kernels::WgradGemm wg;
        wg.rows = k1 - k0;
        wg.cols = rows;
        wg.npix = PQ;
        wg.row_ptrs = sc.dy_rows.data();
        wg.dyt = sc.colt.data();
        wg.ldt = ldt;
        wg.c = part + chunk * psize + k0 * rows;
        wg.ldc = rows;
        wg.init = n == begin ? kernels::Start::zero : kernels::Start::accumulate;
        k.wgrad_gemm(wg);
      }
    }
  });
}

// ---- bf16 -------------------------------------------------------------------------------------------------
// The fp32 plan (prepare) decides the path (direct, shifted, im2col; implicit, direct or strided input
// gradient); the bf16 passes run the same paths with pairs over channels in the reduction, so the column
// sources keep their shape with half the rows. The reduction order of an output is (channel pair, r, s) with
// the odd channel's product first in each step (vdpbf16ps), fixed by the plan alone.
void Conv2d::prepare_bf16() {
  const ConvGeom& g = geom_;
  if (kernels::kernels().isa != packed_for_isa_) {
    packed_for_isa_ = kernels::kernels().isa;
    wpack2_of_.clear();
    wdxpack2_of_.clear();
  }
  const Shape sample{1, g.C, g.H, g.W};
  if (sample == bf16_prepared_for_ && scratch_.front().tmp2.size() > 0 &&
      scratch_.back().tmp2.size() == scratch_.front().tmp2.size())
    return;
  const int64_t C2 = (g.C + 1) / 2, K2 = (g.K + 1) / 2, RS = g.R * g.S, PQ = g.pq(), PQ2 = (PQ + 1) / 2;
  boff2_.resize(static_cast<size_t>(C2 * RS));
  for (int64_t c2 = 0; c2 < C2; ++c2)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s)
        boff2_[static_cast<size_t>((c2 * g.R + r) * g.S + s)] =
            direct_    ? c2 * PQ
            : shifted_ ? ((c2 * g.S + s) * src_rows_ + r * g.dilation_h) * g.Q
                       : ((c2 * g.R + r) * g.S + s) * PQ;
  border2_ = {};
  if (shifted_ && !prepad_ && g.pad_h > 0) border2_.set(g, C2, g.pad_h, g.H, g.P, g.Q);
  dx_border2_ = {};
  dx_boff2_.clear();
  if (dx_implicit_) {
    dx_boff2_.resize(static_cast<size_t>(K2 * RS));
    for (int64_t k2 = 0; k2 < K2; ++k2)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s)
          dx_boff2_[static_cast<size_t>((k2 * g.R + r) * g.S + s)] = ((k2 * g.S + s) * dx_rows_ + r * g.dilation_h) * dx_w_;
    dx_border2_.set(g, K2, dx_top(), g.P, dx_h_, dx_w_);
  }
  const int64_t fwd = direct_ ? C2 * PQ : shifted_ ? C2 * g.S * src_rows_ * g.Q : C2 * RS * PQ;
  const int64_t bwd = dx_implicit_ ? K2 * g.S * dx_rows_ * dx_w_ : K2 * PQ;
  const int64_t plane = std::max({src_rows_ * g.Q, PQ, dx_rows_ * dx_w_});
  for (Scratch& sc : scratch_) {
    sc.pairs.resize(static_cast<size_t>(std::max(fwd, bwd)));
    sc.apack.resize(static_cast<size_t>(std::max((g.crs() + 1) * PQ2, (direct_ ? g.C * PQ : col_size_) / 2 + PQ2)));
    sc.arows.resize(static_cast<size_t>(g.crs() + 1));
    sc.tmp2.resize(static_cast<size_t>(2 * plane));
  }
  wpack2_of_.clear();
  wdxpack2_of_.clear();
  wgrad_in_place_ = PQ % 2 == 0 && std::all_of(boff_.begin(), boff_.end(), [](int64_t o) { return o % 2 == 0; });
  bf16_prepared_for_ = sample;
}

const uint32_t* Conv2d::pair_source(const float* xn, Scratch& sc) const {
  const ConvGeom& g = geom_;
  const kernels::KernelTable& k = kernels::kernels();
  uint32_t* out = sc.pairs.data();
  if (direct_) {
    for (int64_t c2 = 0; c2 < (g.C + 1) / 2; ++c2)
      k.pack_pairs(xn + 2 * c2 * g.pq(), 2 * c2 + 1 < g.C ? xn + (2 * c2 + 1) * g.pq() : nullptr, g.pq(),
                   out + c2 * g.pq());
    return out;
  }
  const SourceImage im = source_image(xn, sc, 0);
  if (shifted_)
    k.shifted_source_bf16(shifted_columns(im, g.C), out, sc.tmp2.data());
  else
    k.im2col_bf16(im2col_columns(im, g.C), out, sc.tmp2.data());
  return out;
}

namespace {
// A (M, ...) fp32 matrix whose reduction index is (pair p, half h) for p < pairs, h < 2, element at
// src(m, p, h) (0 where `valid` says the half is padding), packed as bf16 pairs for rows_gemm_bf16.
template <typename At>
void pack_pairs_of(int64_t M, int64_t pairs, std::vector<float>& scratch, std::vector<uint32_t>& out, At at) {
  scratch.resize(static_cast<size_t>(M * 2 * pairs));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t p = 0; p < pairs; ++p)
      for (int64_t h = 0; h < 2; ++h) scratch[static_cast<size_t>((m * pairs + p) * 2 + h)] = at(m, p, h);
  std::vector<const float*> rows(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) rows[static_cast<size_t>(m)] = scratch.data() + m * 2 * pairs;
  out.resize(static_cast<size_t>(M * pairs));
  kernels::kernels().pack_a_bf16(rows.data(), 1, M, 2 * pairs, out.data());
}
}  // namespace

// x: (N, C, H, W) -> y: (N, K, P, Q), bf16 inputs and weights, fp32 sums started from the fp32 bias.
void Conv2d::forward_bf16(const Tensor& x, Tensor& y) {
  const ConvGeom& g = prepare(x.shape());
  prepare_bf16();
  y.resize(Shape{g.N, g.K, g.P, g.Q});
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t C2 = (g.C + 1) / 2, RS = g.R * g.S, PQ = g.pq(), chw = g.C * g.H * g.W, CRS = g.crs();
  const float* w = weight_.value.data();
  // Weight (k; c2, r, s; h) = W[k][2 c2 + h][r][s].
  if (!same_or_copy(wpack2_of_, w, weight_.value.size())) {
    pack_pairs_of(g.K, C2 * RS, wre_, wpack2_, [&](int64_t m, int64_t p, int64_t h) {
      const int64_t c = 2 * (p / RS) + h;
      return c < g.C ? w[m * CRS + c * RS + p % RS] : 0.0f;
    });
  }
  const float* b = opt_.bias ? bias_.value.data() : nullptr;
  const kernels::LiveRows* live = border2_.planned(k);
  const float* xd = x.data();
  float* yd = y.data();
  parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    Scratch& sc = scratch_[static_cast<size_t>(worker_slot())];
    for (int64_t n = begin; n < end; ++n) {
      kernels::RowsGemmBf16 gm;
      gm.M = g.K;
      gm.N = PQ;
      gm.K = C2 * RS;
      gm.a_packed = wpack2_.data();
      gm.b = pair_source(xd + n * chw, sc);
      gm.boff = boff2_.data();
      gm.live = live;
      gm.c = yd + n * g.K * PQ;
      gm.ldc = PQ;
      gm.init = b ? kernels::Start::row_bias : kernels::Start::zero;
      gm.bias = b;
      k.rows_gemm_bf16(gm);
    }
  });
}

// As backward, with the three products on bf16 pairs: dW^T (CRS, K) over pixel pairs, the input gradient
// over output-channel pairs. The chunking, partial buffers and their fixed-order sum are the fp32 pass's.
void Conv2d::backward_bf16(const Tensor& x, const Tensor& dy, Tensor* dx) {
  const ConvGeom& g = prepare(x.shape());
  check_shape(name(), "output gradient", Shape{g.N, g.K, g.P, g.Q}, dy.shape());
  prepare_bf16();
  if (dx) dx->resize(x.shape());
  const kernels::KernelTable& k = kernels::kernels();
  const PadTables t{row_src_.data(), col_src_.data()};
  const int64_t CRS = g.crs(), PQ = g.pq(), PQ2 = (PQ + 1) / 2, chw = g.C * g.H * g.W, RS = g.R * g.S;
  const int64_t K2 = (g.K + 1) / 2;
  const int64_t rows = CRS + (opt_.bias ? 1 : 0);
  const int64_t psize = rows * g.K;
  const int64_t ldt = kernels::wgrad_ldt(g.K);
  const int64_t chunks = chunk_count(g.N, kBatchChunk);
  partials_.resize(Shape{chunks, psize});
  const float* w = weight_.value.data();
  const bool dx_packed = !dx || same_or_copy(wdxpack2_of_, w, weight_.value.size());
  if (!dx_packed && dx_implicit_) {
    // Flipped weight over output-channel pairs: (c; k2, r', s'; h) = W[2 k2 + h][c][R-1-r'][S-1-s'].
    pack_pairs_of(g.C, K2 * RS, wre_, wdxpack2_, [&](int64_t c, int64_t p, int64_t h) {
      const int64_t kk = 2 * (p / RS) + h, r = (p % RS) / g.S, s = p % g.S;
      return kk < g.K ? w[((kk * g.C + c) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)] : 0.0f;
    });
  } else if (!dx_packed) {
    // W^T (CRS, K) over output-channel pairs: (crs; k2; h) = W[2 k2 + h][crs].
    pack_pairs_of(CRS, K2, wre_, wdxpack2_, [&](int64_t crs, int64_t p, int64_t h) {
      const int64_t kk = 2 * p + h;
      return kk < g.K ? w[kk * CRS + crs] : 0.0f;
    });
  }
  const kernels::LiveRows* dx_live = dx_implicit_ ? dx_border2_.planned(k) : nullptr;
  const float* xd = x.data();
  const float* dyd = dy.data();
  float* dxd = dx ? dx->data() : nullptr;
  float* part = partials_.data();

  // As in fp32: every sample's dy^T as pairs of adjacent pixels first, read by each row group of its chunk: the
  // vector transpose, then adjacent rows paired (both vectorized; transpose_pairs would store pair by pair). An
  // odd PQ's last row pairs with zeros.
  dyt2_.resize(static_cast<size_t>(g.N * PQ2 * ldt));
  parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    Scratch& sc = scratch_[static_cast<size_t>(worker_slot())];
    for (int64_t n = begin; n < end; ++n) {
      k.transpose(dyd + n * g.K * PQ, PQ, g.K, PQ, sc.dyt.data(), ldt);
      for (int64_t jp = 0; jp < PQ2; ++jp)
        k.pack_pairs(sc.dyt.data() + 2 * jp * ldt, 2 * jp + 1 < PQ ? sc.dyt.data() + (2 * jp + 1) * ldt : nullptr, ldt,
                     dyt2_.data() + (n * PQ2 + jp) * ldt);
    }
  });

  // dW^T (CRS, K) and db (+)= columns (CRS, PQ) * dy_n^T (PQ, K), pairs over pixels: the fixed chunks and row
  // groups of the fp32 pass, each row one chain over its chunk's samples and pixel pairs in order.
  const int64_t groups = wgrad_groups();
  parallel_for(chunks * groups, 1, [&](int64_t t0, int64_t t1) {
    Scratch& sc = scratch_[static_cast<size_t>(worker_slot())];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t chunk = t / groups, group = t % groups;
      const int64_t begin = chunk * kBatchChunk, end = std::min(g.N, begin + kBatchChunk);
      const auto [c0, c1, r0, r1] = wgrad_group(group, groups);
      const bool bias_row = opt_.bias && group + 1 == groups;
      for (int64_t n = begin; n < end; ++n) {
        const float* src = column_source(xd + n * chw, sc, c0, c1);
        const int64_t shift = boff_[static_cast<size_t>(c0 * RS)];  // where channel c0's rows start
        // Each column row as pairs of adjacent pixels, read in place by the product (no transposing pack): the
        // group's channels of the column source converted at once when its rows align on pairs (shift is
        // then even too, so the pairs are the whole source's), else row by row.
        uint32_t* ap = sc.apack.data();
        if (wgrad_in_place_) {
          const int64_t src_size = (c1 - c0) * (direct_ ? PQ : col_size_ / g.C);
          k.row_pairs_bf16(src, src_size, ap);
          for (int64_t i = r0; i < r1; ++i)
            sc.arows[static_cast<size_t>(i)] = ap + (boff_[static_cast<size_t>(i)] - shift) / 2;
          if (bias_row) {
            k.row_pairs_bf16(ones_.data(), PQ, ap + src_size / 2);
            sc.arows[static_cast<size_t>(CRS)] = ap + src_size / 2;
          }
        } else {
          for (int64_t i = r0; i < r1 + (bias_row ? 1 : 0); ++i) {
            const float* row = i < CRS ? src + (boff_[static_cast<size_t>(i)] - shift) : ones_.data();
            k.row_pairs_bf16(row, PQ, ap + (i - r0) * PQ2);
            sc.arows[static_cast<size_t>(i)] = ap + (i - r0) * PQ2;
          }
        }
        kernels::RowsGemmBf16 wg;
        wg.M = r1 - r0 + (bias_row ? 1 : 0);
        wg.N = g.K;
        wg.K = PQ2;
        wg.a_rows = sc.arows.data() + r0;
        wg.b = dyt2_.data() + n * PQ2 * ldt;
        wg.ldb = ldt;
        wg.c = part + chunk * psize + r0 * g.K;
        wg.ldc = g.K;
        wg.init = n == begin ? kernels::Start::zero : kernels::Start::accumulate;
        k.rows_gemm_bf16(wg);
      }
    }
  });

  // dx of each sample, written by the one task that owns the sample.
  if (dxd) parallel_for(g.N, 1, [&](int64_t begin, int64_t end) {
    Scratch& sc = scratch_[static_cast<size_t>(worker_slot())];
    for (int64_t n = begin; n < end; ++n) {
      const float* dyn = dyd + n * g.K * PQ;
      float* dxn = dxd + n * chw;
      kernels::RowsGemmBf16 gm;
      gm.init = kernels::Start::zero;
      gm.a_packed = wdxpack2_.data();
      if (dx_implicit_) {
        k.shifted_source_bf16(dx_shifted_source(dyn), sc.pairs.data(), sc.tmp2.data());
        float* out = prepad_ ? sc.dpadded.data() : dxn;
        gm.M = g.C;
        gm.N = dx_h_ * dx_w_;
        gm.K = K2 * RS;
        gm.b = sc.pairs.data();
        gm.boff = dx_boff2_.data();
        gm.live = dx_live;
        gm.c = out;
        gm.ldc = dx_h_ * dx_w_;
        k.rows_gemm_bf16(gm);
        if (prepad_) fold_sample(out, dxn, g, t);
        continue;
      }
      // dy_n as pairs over output channels: (K2, PQ).
      for (int64_t k2 = 0; k2 < K2; ++k2)
        k.pack_pairs(dyn + 2 * k2 * PQ, 2 * k2 + 1 < g.K ? dyn + (2 * k2 + 1) * PQ : nullptr, PQ,
                     sc.pairs.data() + k2 * PQ);
      gm.N = PQ;
      gm.K = K2;
      gm.b = sc.pairs.data();
      gm.ldb = PQ;
      if (dx_direct_) {
        gm.M = g.C;
        gm.c = dxn;
        gm.ldc = PQ;
        k.rows_gemm_bf16(gm);
      } else {
        gm.M = CRS;
        gm.c = sc.col.data();
        gm.ldc = PQ;
        k.rows_gemm_bf16(gm);
        scatter_columns(sc.col.data(), dxn, sc);
      }
    }
  });

  add_chunk_partials(part, chunks, psize, g.K, CRS, weight_.grad.data(), opt_.bias ? bias_.grad.data() : nullptr,
                     false);
}

}  // namespace stride
