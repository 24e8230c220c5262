#include "layers/pool2d_geometry.hpp"

#include <climits>
#include <cmath>
#include <string>
#include <tuple>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"

namespace stride {

namespace {
// Floor division for a possibly negative numerator (PyTorch's div_rtn).
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::string pair_str(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }
}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  int64_t out = floor_div(in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

Pool2dOptions resolve_pool2d_options(std::string_view layer, Pool2dOptions opt, bool check_p) {
  const std::string who(layer);
  if (opt.kernel_h < 1 || opt.kernel_w < 1)
    throw ConfigError(who + ": expected a kernel of at least 1x1, got " + pair_str(opt.kernel_h, opt.kernel_w));
  if (opt.stride_h == 0) opt.stride_h = opt.kernel_h;
  if (opt.stride_w == 0) opt.stride_w = opt.kernel_w;
  if (opt.stride_h < 1 || opt.stride_w < 1)
    throw ConfigError(who + ": expected a stride of at least 1x1, got " + pair_str(opt.stride_h, opt.stride_w));
  if (opt.pad_h < 0 || opt.pad_w < 0)
    throw ConfigError(who + ": expected a non-negative pad, got " + pair_str(opt.pad_h, opt.pad_w));
  if (opt.pad_h > opt.kernel_h / 2 || opt.pad_w > opt.kernel_w / 2)
    throw ConfigError(who + ": pad should be at most half the kernel: kernel " + pair_str(opt.kernel_h, opt.kernel_w) +
                      ", got pad " + pair_str(opt.pad_h, opt.pad_w));
  if (check_p && !(opt.p > 0.0 && std::isfinite(opt.p)))
    throw ConfigError(who + ": expected a finite norm p > 0, got " + std::to_string(opt.p));
  return opt;
}

Pool2dGeometry pool2d_geometry(std::string_view layer, const Pool2dOptions& opt, const Shape& in) {
  const std::string who(layer);
  if (in.rank != 4) throw ShapeError(who + ": expected input of rank 4 (N, C, H, W), got " + in.str());
  Pool2dGeometry g;
  g.N = in[0];
  g.C = in[1];
  g.H = in[2];
  g.W = in[3];
  g.R = opt.kernel_h;
  g.S = opt.kernel_w;
  g.stride_h = opt.stride_h;
  g.stride_w = opt.stride_w;
  g.pad_h = opt.pad_h;
  g.pad_w = opt.pad_w;
  g.P = pool_output_size(g.H, g.R, g.stride_h, g.pad_h, opt.ceil_mode);
  g.Q = pool_output_size(g.W, g.S, g.stride_w, g.pad_w, opt.ceil_mode);
  if (g.H < 1 || g.W < 1 || g.P < 1 || g.Q < 1)
    throw ShapeError(who + ": a " + pair_str(g.R, g.S) + " window with pad " + pair_str(g.pad_h, g.pad_w) +
                     " does not fit input " + in.str() + " (output would be " + pair_str(g.P, g.Q) + ")");
  // The max-pool argmax stores an index within one plane as int32.
  if (g.H * g.W > INT32_MAX) throw ShapeError(who + ": input plane too large for pooling: " + in.str());
  return g;
}

Pool2dOptions pool2d_options_from_config(const LayerConfig& c) {
  if (!c.has("kernel")) throw ConfigError(c.context() + "missing required field 'kernel'");
  Pool2dOptions opt;
  std::tie(opt.kernel_h, opt.kernel_w) = c.get_pair("kernel", {0, 0});
  if (c.has("stride")) {
    std::tie(opt.stride_h, opt.stride_w) = c.get_pair("stride", {0, 0});
    // 0 means "the kernel" only in the C++ options; a spec must say what it means.
    if (opt.stride_h < 1 || opt.stride_w < 1)
      throw ConfigError(c.context() + "field 'stride': expected at least 1, got " + pair_str(opt.stride_h, opt.stride_w));
  }
  std::tie(opt.pad_h, opt.pad_w) = c.get_pair("pad", {0, 0});
  opt.ceil_mode = c.get_bool("ceil_mode", false);
  return opt;
}

kernels::Pool PoolTables::build(const Pool2dGeometry& g, bool count_include_pad) {
  hb.resize(static_cast<size_t>(g.P));
  he.resize(static_cast<size_t>(g.P));
  first_col.resize(static_cast<size_t>(g.Q));
  divisor.resize(static_cast<size_t>(g.P * g.Q));
  for (int64_t p = 0; p < g.P; ++p) {
    const PoolSpan hs = pool_span(p, g.R, g.stride_h, g.pad_h, g.H);
    hb[static_cast<size_t>(p)] = static_cast<int32_t>(hs.begin);
    he[static_cast<size_t>(p)] = static_cast<int32_t>(hs.end);
    for (int64_t q = 0; q < g.Q; ++q) {
      const PoolSpan ws = pool_span(q, g.S, g.stride_w, g.pad_w, g.W);
      if (p == 0) first_col[static_cast<size_t>(q)] = static_cast<int32_t>(ws.begin);
      const int64_t d = count_include_pad ? hs.padded * ws.padded : (hs.end - hs.begin) * (ws.end - ws.begin);
      divisor[static_cast<size_t>(p * g.Q + q)] = static_cast<float>(d);
    }
  }
  kernels::Pool k;
  k.planes = g.N * g.C;
  k.H = g.H;
  k.W = g.W;
  k.P = g.P;
  k.Q = g.Q;
  k.R = g.R;
  k.S = g.S;
  k.sh = g.stride_h;
  k.sw = g.stride_w;
  k.ph = g.pad_h;
  k.pw = g.pad_w;
  k.hb = hb.data();
  k.he = he.data();
  k.divisor = divisor.data();
  k.first_col = first_col.data();
  return k;
}

}  // namespace stride
