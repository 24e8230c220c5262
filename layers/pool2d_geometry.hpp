#pragma once
// Window geometry shared by the pooling layers: options, PyTorch's output-size rule (with Caffe's and
// PyTorch's ceil-mode rule that the last window must start inside the input or the left padding), and the
// validation that turns bad options and shapes into typed errors naming the layer.
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <vector>

#include "framework/core/kernels/kernels.hpp"
#include "framework/core/shape.hpp"

namespace stride {

class LayerConfig;

struct Pool2dOptions {
  int64_t kernel_h = 0, kernel_w = 0;  // required, >= 1
  int64_t stride_h = 0, stride_w = 0;  // 0: same as the kernel (PyTorch's default)
  int64_t pad_h = 0, pad_w = 0;        // at most half the kernel (PyTorch's rule)
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only
  double p = 2.0;                 // lp_pool2d only, > 0
};

// One pass: x (N, C, H, W) -> y (N, C, P, Q) with an R x S window.
struct Pool2dGeometry {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t P = 0, Q = 0;
  int64_t R = 0, S = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// Where output o's window lies along one dimension: input indices [begin, end) (never empty for a valid
// geometry), and `padded`, the window's length clipped to the padded extent [-pad, in + pad) only, which is
// PyTorch's (and Caffe's) average divisor with count_include_pad: a ceil-mode window hanging past the
// padding counts fewer elements.
struct PoolSpan {
  int64_t begin, end, padded;
};
inline PoolSpan pool_span(int64_t o, int64_t kernel, int64_t stride, int64_t pad, int64_t in) {
  const int64_t start = o * stride - pad;
  const int64_t stop = start + kernel < in + pad ? start + kernel : in + pad;
  return {start > 0 ? start : 0, stop < in ? stop : in, stop - start};
}

// Output columns [begin, end) whose window lies wholly inside [0, W). The kernels run these as one loop over
// q that the compiler vectorizes, and the few clipped columns at the edges one by one.
struct ColumnRange {
  int64_t begin, end;
};
inline ColumnRange interior_columns(const Pool2dGeometry& g) {
  const int64_t begin = (g.pad_w + g.stride_w - 1) / g.stride_w;
  int64_t end = g.W + g.pad_w - g.S < 0 ? 0 : (g.W + g.pad_w - g.S) / g.stride_w + 1;
  if (end > g.Q) end = g.Q;
  if (end < begin) end = begin;
  return {begin, end};
}

// Calls f(stride) with the stride as a compile-time constant for the common 1 and 2, so the strided loads
// of the vectorized loop become shuffles instead of gathers.
template <class F>
void with_stride(int64_t stride, F&& f) {
  if (stride == 1)
    f(std::integral_constant<int64_t, 1>{});
  else if (stride == 2)
    f(std::integral_constant<int64_t, 2>{});
  else
    f(stride);
}

// PyTorch's pooling_output_shape: floor or ceil of (in + 2*pad - kernel) / stride + 1; in ceil mode the last
// window is dropped when it would start at or past in + pad (entirely in the right padding). May be < 1.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode);

// Checks kernel >= 1, stride >= 1 (0 becomes the kernel), 0 <= pad <= kernel / 2, and p > 0 when
// `check_p`; throws ConfigError "<layer>: ...". Returns the options with the stride filled in.
Pool2dOptions resolve_pool2d_options(std::string_view layer, Pool2dOptions opt, bool check_p = false);

// Geometry for input `in`; throws ShapeError naming the layer unless `in` is (N, C, H, W) and at least one
// window fits. `opt` must come from resolve_pool2d_options.
Pool2dGeometry pool2d_geometry(std::string_view layer, const Pool2dOptions& opt, const Shape& in);

// Reads kernel (required), stride (default: kernel), pad and ceil_mode. The caller reads its own keys
// (count_include_pad, p) and calls c.finish().
Pool2dOptions pool2d_options_from_config(const LayerConfig& c);

// Planes (one (n, c) pair each) per parallel task: about 16k window-element visits per task, so small
// feature maps do not drown in scheduling overhead. Any value gives the same results.
inline int64_t pool_grain(const Pool2dGeometry& g) {
  const int64_t per_plane = g.P * g.Q * g.R * g.S;
  return per_plane >= 16384 ? 1 : 16384 / (per_plane > 0 ? per_plane : 1);
}

// The per-geometry tables the pooling kernels take (framework/core/kernels/kernels.hpp, Pool): each output row's
// input rows, each window's first column, and the average pool's divisors. Members of the layer, rebuilt per
// pass without allocating once they have held the largest geometry.
struct PoolTables {
  std::vector<int32_t> hb, he, first_col;
  std::vector<float> divisor;
  // Fills the tables for g and returns the kernel geometry for planes [0, g.N * g.C).
  kernels::Pool build(const Pool2dGeometry& g, bool count_include_pad);
};

}  // namespace stride
