#include "layers/linear.hpp"

#include <algorithm>
#include <string>

#include "framework/core/bf16.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/gemm.hpp"
#include "framework/core/init.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/parallel.hpp"

namespace stride {
namespace {

// Fixed work blocks: they never depend on the thread count, so every gemm call (and hence every bit of the
// result) is the same for 1 or 64 threads.
constexpr int64_t kBatchBlock = 32;      // rows of x per forward / dx task
constexpr int64_t kColBlock = 32;        // output columns per forward / dx task (a multiple of every register tile;
                                         // 128 left cifar10_quick's 64-output ip1 one task per micro-batch)
constexpr int64_t kTransposeBlock = 64;  // rows of W^T per transpose task
constexpr int64_t kOutBlock = 64;        // rows of dW per weight-gradient tile
constexpr int64_t kInBlock = 256;        // columns of dW per weight-gradient tile

struct LinearGeom {
  int64_t N, in, out;
};

// Both products below run on fixed (row block, column block) tiles of the output, so a micro-batch of 16
// rows still gives every thread work; a tile changes only which outputs a task computes, never the FMA chain
// of one (the reduction always runs whole, in order), so the bits do not depend on the tiles or the threads.
template <typename Tile>
void for_each_tile(int64_t rows, int64_t cols, Tile tile) {
  const int64_t row_tiles = chunk_count(rows, kBatchBlock), col_tiles = chunk_count(cols, kColBlock);
  parallel_for(row_tiles * col_tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = (t / col_tiles) * kBatchBlock, c0 = (t % col_tiles) * kColBlock;
      tile(r0, std::min(rows, r0 + kBatchBlock), c0, std::min(cols, c0 + kColBlock));
    }
  });
}

// The left operand's rows packed once per row block (kBatchBlock rows, at out + r0 * K) for every column tile
// of that block, as each tile's gemm would pack them: lenet5's ip1 has 16 column tiles per micro-batch forward
// and 25 in its input gradient, which packed the same rows each time.
void pack_row_blocks_fp32(const float* A, int64_t N, int64_t K, std::vector<float>& out) {
  out.resize(static_cast<size_t>(N * K));
  parallel_for(chunk_count(N, kBatchBlock), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t r = b0; r < b1; ++r) {
      const int64_t r0 = r * kBatchBlock, r1 = std::min(N, r0 + kBatchBlock);
      pack_a(false, r1 - r0, K, A + r0 * K, K, out.data() + r0 * K);
    }
  });
}

// w: (out, in) = W, b: (out) or null; x: (N, in) -> y: (N, out). The bias starts each output's FMA chain
// (Start::col_bias). The product reads W^T's rows (contiguous output columns). A micro-batch (N within one row
// block) transposes, in each tile's product, just the tile's block of W into a per-thread buffer that stays in
// L2: W is read once per pass. A larger batch (evaluation) transposes the whole of W once into wt, instead of
// once per row block. Either way the tile's B holds the same values, so the bits are the same.
void linear_forward(const float* x, const float* w, const float* b, float* y, const LinearGeom& g, Tensor& wt,
                    std::vector<float>& xpack) {
  const Start init = b ? Start::col_bias : Start::zero;
  pack_row_blocks_fp32(x, g.N, g.in, xpack);
  const bool per_tile = g.N <= kBatchBlock;
  if (!per_tile) {
    wt.resize(Shape{g.in, g.out});
    float* t = wt.data();
    parallel_for(g.in, kTransposeBlock, [&](int64_t i0, int64_t i1) {
      kernels::kernels().transpose(w + i0, g.in, g.out, i1 - i0, t + i0 * g.out, g.out);
    });
  }
  for_each_tile(g.N, g.out, [&](int64_t n0, int64_t n1, int64_t o0, int64_t o1) {
    const float* a = xpack.data() + n0 * g.in;
    float* c = y + n0 * g.out + o0;
    const float* bias = b ? b + o0 : nullptr;
    if (per_tile) gemm_packed(true, n1 - n0, o1 - o0, g.in, a, w + o0 * g.in, g.in, c, g.out, init, bias);
    else gemm_packed(false, n1 - n0, o1 - o0, g.in, a, wt.data() + o0, g.out, c, g.out, init, bias);
  });
}

// dy: (N, out), W: (out, in) -> dx: (N, in), overwritten
void linear_backward_data(const float* dy, const float* w, float* dx, const LinearGeom& g, std::vector<float>& dypack) {
  pack_row_blocks_fp32(dy, g.N, g.out, dypack);
  for_each_tile(g.N, g.in, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    gemm_packed(false, n1 - n0, i1 - i0, g.out, dypack.data() + n0 * g.out, w + i0, g.in, dx + n0 * g.in + i0, g.in);
  });
}

// dy: (N, out), x: (N, in) -> dW: (out, in) += dy^T x, db: (out) += sum_n dy
// Each fixed (out-block, in-block) tile of dW is one gemm over the whole batch whose FMA chains start from the
// gradient already there, so no partial sums are needed.
void linear_backward_params(const float* dy, const float* x, float* dw, float* db, const LinearGeom& g) {
  const int64_t out_tiles = chunk_count(g.out, kOutBlock);
  const int64_t in_tiles = chunk_count(g.in, kInBlock);
  parallel_chunks(out_tiles * in_tiles, 1, [&](int64_t t, int64_t, int64_t) {
    const int64_t o0 = (t / in_tiles) * kOutBlock, o1 = std::min(g.out, o0 + kOutBlock);
    const int64_t i0 = (t % in_tiles) * kInBlock, i1 = std::min(g.in, i0 + kInBlock);
    gemm(true, false, o1 - o0, i1 - i0, g.N, dy + o0, g.out, x + i0, g.in, dw + o0 * g.in + i0, g.in,
         Start::accumulate);
    if (db && i0 == 0)
      for (int64_t o = o0; o < o1; ++o) {
        float s = 0.0f;  // fixed order over the batch
        for (int64_t n = 0; n < g.N; ++n) s += dy[n * g.out + o];
        db[o] += s;
      }
  });
}

// ---- bf16: the same tiles, with bf16 pairs over the reduction index and fp32 sums --------------------------
// rows (M, K) fp32 with row stride ld (or, transposed, element (m, k) at src[k * ld + m]) packed as bf16 pairs
// for rows_gemm_bf16, one pack per fixed block of kBatchBlock rows (block b at out + b * kBatchBlock * KP).
void pack_row_blocks(const float* src, int64_t ld, bool transposed, int64_t M, int64_t K, std::vector<uint32_t>& out) {
  const int64_t KP = (K + 1) / 2;
  out.resize(static_cast<size_t>(M * KP));
  parallel_for(chunk_count(M, kBatchBlock), 1, [&](int64_t b0, int64_t b1) {
    std::vector<const float*> rows(static_cast<size_t>(kBatchBlock));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = b * kBatchBlock, m1 = std::min(M, m0 + kBatchBlock);
      for (int64_t m = m0; m < m1; ++m) rows[static_cast<size_t>(m - m0)] = transposed ? src + m : src + m * ld;
      kernels::kernels().pack_a_bf16(rows.data(), transposed ? ld : 1, m1 - m0, K, out.data() + m0 * KP);
    }
  });
}

// C (M x N) = init + A B on (kBatchBlock, kColBlock) tiles: A packed by pack_row_blocks, B as pair rows.
void tiled_gemm_bf16(const std::vector<uint32_t>& a, const uint32_t* b, int64_t ldb, int64_t M, int64_t N, int64_t KP,
                     float* c, int64_t ldc, Start init, const float* bias) {
  for_each_tile(M, N, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    kernels::RowsGemmBf16 g;
    g.M = m1 - m0;
    g.N = n1 - n0;
    g.K = KP;
    g.a_packed = a.data() + m0 * KP;
    g.b = b + n0;
    g.ldb = ldb;
    g.c = c + m0 * ldc + n0;
    g.ldc = ldc;
    g.init = init;
    g.bias = bias ? bias + n0 : nullptr;
    kernels::kernels().rows_gemm_bf16(g);
  });
}

// B (K x N) as pair rows over K: out[kp * N + j] = bf16_pair(src[2kp][j], src[2kp + 1][j]) (rows of stride ld).
void pair_rows(const float* src, int64_t ld, int64_t K, int64_t N, std::vector<uint32_t>& out) {
  const int64_t KP = (K + 1) / 2;
  out.resize(static_cast<size_t>(KP * N));
  parallel_for(KP, 8, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      kernels::kernels().pack_pairs(src + 2 * p * ld, 2 * p + 1 < K ? src + (2 * p + 1) * ld : nullptr, N,
                                    out.data() + p * N);
  });
}

}  // namespace

Linear::Linear(std::string name, LinearOptions options) : Layer(std::move(name)), options_(options) {
  if (options_.out_features <= 0)
    throw ConfigError(this->name() + ": out_features must be positive, got " + std::to_string(options_.out_features));
}

std::unique_ptr<Layer> Linear::from_config(const LayerConfig& c) {
  LinearOptions o;
  o.out_features = c.get_int("out_features");
  o.bias = c.get_bool("bias", true);
  o.init = parse_init(c.get_string("init", "pytorch"), c.context());
  c.finish();
  if (o.out_features <= 0)
    throw ConfigError(c.context() + "field 'out_features': expected a positive integer, got " +
                      std::to_string(o.out_features));
  return std::make_unique<Linear>(c.name(), o);
}

Shape Linear::output_shape(const Shape& in) const {
  if (in.rank < 2 || in.per_sample() <= 0)
    throw ShapeError(name() + ": expected input of rank >= 2 (N, ...), got " + in.str());
  return Shape{in[0], options_.out_features};
}

std::vector<ParamSpec> Linear::param_specs(const Shape& in) const {
  output_shape(in);  // validates
  const int64_t f = in.per_sample(), k = options_.out_features;
  std::vector<ParamSpec> specs;
  specs.push_back({"weight", Shape{k, f}, ParamRole::learnable, options_.init, f, k, true});
  if (options_.bias) specs.push_back({"bias", Shape{k}, ParamRole::learnable, Init::pytorch_default, f, k, false});
  return specs;
}

double Linear::forward_flops(const Shape& in) const {
  return 2.0 * static_cast<double>(in[0]) * static_cast<double>(in.per_sample()) *
         static_cast<double>(options_.out_features);
}

void Linear::bind(std::span<const ParamView> params) {
  const size_t expected = options_.bias ? 2 : 1;
  if (params.size() != expected)
    throw ShapeError(name() + ": expected " + std::to_string(expected) + " parameter views, got " +
                     std::to_string(params.size()));
  weight_ = params[0];
  bias_ = options_.bias ? params[1] : ParamView{};
  const auto k = static_cast<size_t>(options_.out_features);
  if (weight_.value.size() % k != 0 || weight_.value.empty() || bias_.value.size() != (options_.bias ? k : 0))
    throw ShapeError(name() + ": bound weight of " + std::to_string(weight_.value.size()) +
                     " values is not (out_features=" + std::to_string(k) + ", in)");
  in_features_ = static_cast<int64_t>(weight_.value.size() / k);
}

void Linear::check_input(const Shape& in) const {
  if (in_features_ == 0) throw Error(name() + ": forward called before bind");
  if (in.rank < 2 || in.per_sample() != in_features_)
    throw ShapeError(name() + ": expected input with " + std::to_string(in_features_) + " features per sample, got " +
                     in.str());
}

void Linear::forward(const Tensor& x, Tensor& y, const RunContext& ctx) {
  check_input(x.shape());
  const LinearGeom g{x.shape()[0], in_features_, options_.out_features};
  y.resize(Shape{g.N, g.out});
  if (ctx.precision == Precision::bf16) {
    // y = x W^T + b: x packed in row blocks, W^T as pairs over the input features (W's rows read in pairs).
    pack_row_blocks(x.data(), g.in, false, g.N, g.in, apack_);
    const float* w = weight_.value.data();
    if (!same_or_copy(wt_pairs_of_, w, weight_.value.size())) {
      wt_pairs_.resize(static_cast<size_t>((g.in + 1) / 2 * g.out));
      uint32_t* bp = wt_pairs_.data();
      parallel_for((g.in + 1) / 2, kTransposeBlock, [&](int64_t p0, int64_t p1) {
        kernels::kernels().transpose_pairs(w + 2 * p0, g.in, g.out, std::min(2 * p1, g.in) - 2 * p0, bp + p0 * g.out,
                                           g.out);
      });
    }
    tiled_gemm_bf16(apack_, wt_pairs_.data(), g.out, g.N, g.out, (g.in + 1) / 2, y.data(), g.out,
                    options_.bias ? Start::col_bias : Start::zero, options_.bias ? bias_.value.data() : nullptr);
    return;
  }
  linear_forward(x.data(), weight_.value.data(), options_.bias ? bias_.value.data() : nullptr, y.data(), g, wt_,
                 rows_packed_);
}

void Linear::backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, const RunContext& ctx) {
  check_input(x.shape());
  const LinearGeom g{x.shape()[0], in_features_, options_.out_features};
  check_shape(name(), "output gradient", Shape{g.N, g.out}, dy.shape());
  if (ctx.precision == Precision::bf16) {
    if (!weight_.grad.empty()) {
      // dW (out, in) += dy^T (out, N) x (N, in), pairs over the batch; the chain starts from the gradient
      // already there, as in fp32. db stays an fp32 sum of dy.
      pack_row_blocks(dy.data(), g.out, true, g.out, g.N, apack_);
      pair_rows(x.data(), g.in, g.N, g.in, bpairs_);
      tiled_gemm_bf16(apack_, bpairs_.data(), g.in, g.out, g.in, (g.N + 1) / 2, weight_.grad.data(), g.in,
                      Start::accumulate, nullptr);
      if (options_.bias && !bias_.grad.empty()) {
        float* db = bias_.grad.data();
        const float* dyd = dy.data();
        parallel_for(g.out, 64, [&](int64_t o0, int64_t o1) {
          for (int64_t o = o0; o < o1; ++o) {
            float s = 0.0f;
            for (int64_t n = 0; n < g.N; ++n) s += dyd[n * g.out + o];
            db[o] += s;
          }
        });
      }
    }
    if (dx) {
      // dx (N, in) = dy (N, out) W (out, in), pairs over the output features.
      dx->resize(x.shape());
      pack_row_blocks(dy.data(), g.out, false, g.N, g.out, apack_);
      if (!same_or_copy(w_pairs_of_, weight_.value.data(), weight_.value.size()))
        pair_rows(weight_.value.data(), g.in, g.out, g.in, w_pairs_);
      tiled_gemm_bf16(apack_, w_pairs_.data(), g.in, g.N, g.in, (g.out + 1) / 2, dx->data(), g.in, Start::zero, nullptr);
    }
    return;
  }
  if (!weight_.grad.empty())
    linear_backward_params(dy.data(), x.data(), weight_.grad.data(),
                           options_.bias && !bias_.grad.empty() ? bias_.grad.data() : nullptr, g);
  if (dx) {
    dx->resize(x.shape());
    linear_backward_data(dy.data(), weight_.value.data(), dx->data(), g, rows_packed_);
  }
}

}  // namespace stride
