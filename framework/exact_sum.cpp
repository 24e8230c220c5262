#include "framework/exact_sum.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"
#include "framework/core/parallel.hpp"

namespace stride {

namespace {

int32_t ceil_log2(int64_t n) {
  int32_t c = 0;
  while ((int64_t{1} << c) < n) ++c;
  return c;
}

// Element-wise work (a maximum, per-element integer conversions, copies): any split gives the same bits. Small
// enough that cifar10_quick's 145,578 gradients make enough tasks for 16 threads (the many-core projection,
// docs/performance.md).
constexpr int64_t kGrain = 4096;       // elements per task of the conversions
constexpr int64_t kCopyGrain = 16384;  // elements per task of the copies and the largest-magnitude scans

// The step's sums back to float: one rounding (int64 to float); the power-of-two factor is exact for every
// normal float result.
void float_block(const int64_t* in, int64_t n, double factor, float* g) {
  for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(static_cast<double>(static_cast<float>(in[i])) * factor);
}

// A segment whose sum needs no conversion, written straight into its n floats at g: NaN when it held a NaN
// or infinity, zeros when it is all zeros or there is nothing to sum. False for every other segment.
bool fill_without_sum(int32_t exponent, bool nothing_to_sum, float* g, int64_t n) {
  if (exponent == ExactSum::kNotFinite) {
    std::fill(g, g + n, std::numeric_limits<float>::quiet_NaN());
    return true;
  }
  if (exponent == ExactSum::kAllZero || nothing_to_sum) {
    std::fill(g, g + n, 0.0f);
    return true;
  }
  return false;
}

}  // namespace

ExactSum::ExactSum(const std::vector<SumSegment>& params, int64_t size, int64_t bucket_elements) : size_(size) {
  if (bucket_elements < 1) throw ConfigError("exact sum: bucket size must be >= 1 element");
  // Segments: every parameter, cut into kSegmentElements pieces from its start. They do not depend on the
  // bucket size, so neither do the exponents nor the result.
  std::vector<SumSegment> sorted = params;
  std::sort(sorted.begin(), sorted.end(), [](const SumSegment& a, const SumSegment& b) { return a.begin < b.begin; });
  std::vector<SumSegment> segments;
  for (size_t k = 0; k < sorted.size(); ++k) {
    const SumSegment p = sorted[k];
    if (p.begin < 0 || p.end > size || p.begin > p.end || (k > 0 && p.begin < sorted[k - 1].end))
      throw Error("exact sum: parameter ranges must be disjoint and inside the buffer");
    for (int64_t b = p.begin; b < p.end; b += kSegmentElements) segments.push_back({b, std::min(p.end, b + kSegmentElements)});
  }
  // Buckets: whole segments from the last to the first (backward's order), closed before they would grow past
  // bucket_elements (a bucket holds at least one segment) or at a gap no parameter owns.
  SumBucket current;
  auto close = [&] {
    if (current.segments.empty()) return;
    std::reverse(current.segments.begin(), current.segments.end());  // increasing offsets inside a bucket
    current.begin = current.segments.front().begin;
    current.end = current.segments.back().end;
    max_segments_ = std::max(max_segments_, current.segments.size());
    buckets_.push_back(std::move(current));
    current = SumBucket{};
  };
  int64_t filled = 0;
  for (size_t k = segments.size(); k-- > 0;) {
    const SumSegment seg = segments[k];
    const int64_t n = seg.end - seg.begin;
    if (!current.segments.empty() && (filled + n > bucket_elements || current.segments.back().begin != seg.end)) {
      close();
      filled = 0;
    }
    current.segments.push_back(seg);
    filled += n;
  }
  close();
  exps_.resize(max_segments_);
  // keep()'s pieces: each segment cut every kCopyGrain elements, so no piece crosses a segment.
  size_t segment = 0;
  for (SumBucket& bucket : buckets_) {
    bucket.first_segment = segment;
    for (const SumSegment& seg : bucket.segments) {
      segment_pieces_.push_back(pieces_.size());
      for (int64_t i = seg.begin; i < seg.end; i += kCopyGrain)
        pieces_.push_back({i, std::min(seg.end, i + kCopyGrain)});
      ++segment;
    }
  }
  segment_pieces_.push_back(pieces_.size());
}

size_t ExactSum::bucket_of(int64_t i) const {
  // Buckets are ordered by decreasing offset.
  size_t lo = 0, hi = buckets_.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (buckets_[mid].begin > i) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

void ExactSum::begin_step(int64_t step_micro_batches, int64_t local) {
  if (step_micro_batches < 1 || local < 0 || local > step_micro_batches)
    throw Error("exact sum: a step of " + std::to_string(step_micro_batches) + " micro-batches cannot have " +
                std::to_string(local) + " here");
  step_micro_batches_ = step_micro_batches;
  local_ = local;
  kept_count_ = 0;
  live_ = {};
  const auto needed = static_cast<size_t>(std::max<int64_t>(local - 1, 0) * size_);
  if (kept_.size() < needed) kept_.resize(needed);
  const size_t largest = static_cast<size_t>(std::max<int64_t>(local - 1, 0)) * pieces_.size();
  if (kept_largest_.size() < largest) kept_largest_.resize(largest);
  sources_.clear();
  sources_.reserve(static_cast<size_t>(local));  // keep() and set_live() then allocate nothing
}

void ExactSum::set_live(std::span<const float> grads) {
  if (!live_.empty()) sources_.erase(std::find(sources_.begin(), sources_.end(), live_.data()));  // set again
  live_ = grads;
  if (!grads.empty()) sources_.push_back(grads.data());
}

void ExactSum::keep(std::span<const float> grads) { keep(grads, nullptr); }

void ExactSum::keep_and_clear(std::span<float> grads) { keep(grads, grads.data()); }

void ExactSum::keep(std::span<const float> grads, float* clear) {
  if (static_cast<int64_t>(grads.size()) != size_ || kept_count_ + 1 >= std::max<int64_t>(local_, 1))
    throw Error("exact sum: keep() of a wrong size or beyond this process's micro-batches");
  float* dst = kept_.data() + kept_count_ * size_;
  uint32_t* largest = kept_largest_.data() + static_cast<size_t>(kept_count_) * pieces_.size();
  // Each piece copied in L1-sized blocks and its largest magnitude read from the copy while it is in L1: the
  // scan that exponents() would make later reads the kept gradients from L3 (7 x 1.7 MB for lenet5).
  parallel_for(static_cast<int64_t>(pieces_.size()), 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const CopyPiece& piece = pieces_[static_cast<size_t>(p)];
      uint32_t m = 0;
      for (int64_t i = piece.begin; i < piece.end; i += kGrain) {
        const int64_t n = std::min(kGrain, piece.end - i);
        std::memcpy(dst + i, grads.data() + i, static_cast<size_t>(n) * sizeof(float));
        m = std::max(m, kernels::kernels().max_abs_bits(dst + i, n));
        if (clear) std::memset(clear + i, 0, static_cast<size_t>(n) * sizeof(float));
      }
      largest[p] = m;
    }
  });
  sources_.push_back(dst);
  ++kept_count_;
}

void ExactSum::exponents(size_t b, int32_t* out, bool parallel) const {
  const SumBucket& bucket = buckets_[b];
  for (size_t s = 0; s < bucket.segments.size(); ++s) {
    const SumSegment seg = bucket.segments[s];
    // The largest magnitude over this process's micro-batches (the kept ones noted by keep()); a maximum, so
    // blocks may finish in any order.
    const size_t global = bucket.first_segment + s;
    uint32_t kept_max = 0;
    for (int64_t k = 0; k < kept_count_; ++k)
      for (size_t p = segment_pieces_[global]; p < segment_pieces_[global + 1]; ++p)
        kept_max = std::max(kept_max, kept_largest_[static_cast<size_t>(k) * pieces_.size() + p]);
    std::atomic<uint32_t> largest_bits{kept_max};
    auto scan = [&](int64_t i0, int64_t i1) {
      const uint32_t m = kernels::kernels().max_abs_bits(live_.data() + seg.begin + i0, i1 - i0);
      uint32_t seen = largest_bits.load();
      while (m > seen && !largest_bits.compare_exchange_weak(seen, m)) {
      }
    };
    if (!live_.empty()) {
      if (parallel) parallel_for(seg.end - seg.begin, kCopyGrain, scan);
      else scan(0, seg.end - seg.begin);
    }
    const uint32_t bits = largest_bits.load();
    if (bits >= 0x7f800000u) {
      out[s] = kNotFinite;
    } else if (bits == 0) {
      out[s] = kAllZero;
    } else {
      float largest;
      std::memcpy(&largest, &bits, sizeof largest);
      int e;
      std::frexp(largest, &e);  // largest = f * 2^e with 0.5 <= f < 1
      out[s] = e;
    }
  }
}

int32_t ExactSum::scale(int32_t exponent) const { return 62 - exponent - ceil_log2(step_micro_batches_); }

void ExactSum::fixed_block(const SumSegment& seg, double factor, int64_t i0, int64_t i1, int64_t* out) const {
  // This process's micro-batch gradients (sources_: the kept copies, then the live buffer), each element
  // rounded to the nearest integer, ties to even (the vector kernel's nearest_int64); integer adds, so the
  // result is the same in any order and on any path.
  kernels::kernels().to_fixed(sources_.data(), static_cast<int64_t>(sources_.size()), seg.begin + i0, i1 - i0, factor,
                              out);
}

void ExactSum::to_fixed(size_t b, const int32_t* exponents, int64_t* out, bool parallel) const {
  const SumBucket& bucket = buckets_[b];
  for (size_t s = 0; s < bucket.segments.size(); ++s) {
    const SumSegment seg = bucket.segments[s];
    int64_t* o = out + (seg.begin - bucket.begin);
    const int32_t e = exponents[s];
    if (e == kAllZero || e == kNotFinite || sources_.empty()) {
      std::fill(o, o + (seg.end - seg.begin), int64_t{0});
      continue;
    }
    const double factor = std::ldexp(1.0, scale(e));  // a power of two: g * factor is exact in double
    auto convert = [&](int64_t i0, int64_t i1) { fixed_block(seg, factor, i0, i1, o + i0); };
    if (parallel) parallel_for(seg.end - seg.begin, kGrain, convert);
    else convert(0, seg.end - seg.begin);
  }
}

void ExactSum::from_fixed(size_t b, const int32_t* exponents, const int64_t* sums, std::span<float> grads,
                          bool parallel) const {
  const SumBucket& bucket = buckets_[b];
  for (size_t s = 0; s < bucket.segments.size(); ++s) {
    const SumSegment seg = bucket.segments[s];
    const int64_t* in = sums + (seg.begin - bucket.begin);
    float* g = grads.data() + seg.begin;
    const int64_t n = seg.end - seg.begin;
    const int32_t e = exponents[s];
    if (fill_without_sum(e, false, g, n)) continue;
    const double factor = std::ldexp(1.0, -scale(e));
    auto convert = [&](int64_t i0, int64_t i1) { float_block(in + i0, i1 - i0, factor, g + i0); };
    if (parallel) parallel_for(n, kGrain, convert);
    else convert(0, n);
  }
}

void ExactSum::reduce_locally(std::span<float> grads) {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    exponents(b, exps_.data(), /*parallel=*/true);
    const SumBucket& bucket = buckets_[b];
    for (size_t s = 0; s < bucket.segments.size(); ++s) {
      const SumSegment seg = bucket.segments[s];
      float* g = grads.data() + seg.begin;
      const int32_t e = exps_[s];
      if (fill_without_sum(e, sources_.empty(), g, seg.end - seg.begin)) continue;
      // to_fixed and from_fixed of each block while its int64 sums are in L1.
      const double to = std::ldexp(1.0, scale(e)), back = std::ldexp(1.0, -scale(e));
      parallel_for(seg.end - seg.begin, kGrain, [&](int64_t i0, int64_t i1) {
        constexpr int64_t kBlock = 1024;
        int64_t sums[kBlock];  // 8 KB of the task's stack
        for (int64_t i = i0; i < i1; i += kBlock) {
          const int64_t n = std::min(kBlock, i1 - i);
          fixed_block(seg, to, i, i + n, sums);
          float_block(sums, n, back, g + i);
        }
      });
    }
  }
}

}  // namespace stride
