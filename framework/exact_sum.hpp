#pragma once
// The exact sum of a step's micro-batch gradients, which makes training independent of how the micro-batches
// are spread over processes (docs/design.md, "The exact gradient sum"; docs/cluster.md).
//
// A float sum depends on its order, and an MPI allreduce picks its order by message size and process count.
// So every micro-batch gradient is converted to 64-bit fixed point with one binary exponent per tensor,
// agreed by every process beforehand (the largest |value| over every micro-batch of the step). Integer adds
// are exact and associative: the sum is the same bits whatever the order and grouping, in this process and
// in MPI_Allreduce(MPI_INT64_T, MPI_SUM). The step's sum is then rounded once back to float.
//
// Precision: with M micro-batches and a tensor's largest |value| below 2^e, each value is multiplied by
// 2^(62 - e - c), c = ceil(log2 M), and rounded to an integer, so M of them cannot overflow int64. The sum's
// error before its one rounding to float is at most M/2 units of 2^(e - 62 + c): below 2^-(62 - 2c) of the
// tensor's largest value (2^-56 for 8 micro-batches, 2^-50 for 64). With 8 micro-batches that is under 1/8 of
// a float32 unit in the last place for every element larger than 2^-30 of the largest, so the result is the
// exact sum rounded to float (or, next to a tie, its neighbour); a float32 sum errs by about M/2 units.
// Elements smaller than the error bound (about 2^-56 of the largest) are lost.
//
// The gradients are laid out in buckets: ranges of the flat gradient buffer in the order backward finishes
// them (the last layer's parameters first), so a bucket can be exchanged while backward still runs. Each
// parameter is one segment with its own exponent (a parameter of more than kSegmentElements is cut into
// pieces of that size); a bucket holds whole segments. Segments do not depend on the bucket size, so neither
// does the result.
#include <cstdint>
#include <span>
#include <vector>

namespace stride {

// [begin, end) of the flat gradient buffer.
struct SumSegment {
  int64_t begin = 0, end = 0;
};

struct SumBucket {
  int64_t begin = 0, end = 0;  // the union of its segments
  std::vector<SumSegment> segments;
  size_t first_segment = 0;  // the index of segments[0] among every bucket's segments, in bucket order
  int64_t size() const { return end - begin; }
};

class ExactSum {
 public:
  // The exponent of a segment that is all zeros, and of one with a NaN or infinity; the largest agreed
  // exponent wins, so one non-finite value anywhere makes the segment's sum NaN on every process.
  static constexpr int32_t kAllZero = -100000;
  static constexpr int32_t kNotFinite = 100000;
  static constexpr int64_t kSegmentElements = int64_t{1} << 20;

  // params: the [begin, end) ranges of the learnable parameters, disjoint, inside [0, size); bucket_elements:
  // the most elements per bucket, unless one segment is larger.
  ExactSum(const std::vector<SumSegment>& params, int64_t size, int64_t bucket_elements);

  const std::vector<SumBucket>& buckets() const { return buckets_; }
  int64_t size() const { return size_; }
  // The bucket that holds element i of the flat buffer (buckets are in backward order: decreasing offsets).
  size_t bucket_of(int64_t i) const;

  // Starts a step of `step_micro_batches` micro-batches (over every process) of which `local` are this
  // process's; drops what the previous step kept.
  void begin_step(int64_t step_micro_batches, int64_t local);
  int64_t step_micro_batches() const { return step_micro_batches_; }
  int64_t local_micro_batches() const { return local_; }
  // The gradient of one of this process's micro-batches that is not its last: copied, and each segment's
  // largest magnitude noted on the way, so exponents() reads only the live buffer.
  void keep(std::span<const float> grads);
  // As keep(), and leaves zeros in grads' pieces (every parameter's range) while they are in L1: the next
  // micro-batch's backward then starts from zeros without a pass of its own over the gradients.
  void keep_and_clear(std::span<float> grads);
  // The gradient buffer that holds this process's last micro-batch, read in place (empty when it has none).
  void set_live(std::span<const float> grads);

  // Per segment of bucket b, this process's largest binary exponent e (every |value| < 2^e), or kAllZero,
  // or kNotFinite. `out` has one entry per segment. `parallel` as for to_fixed.
  void exponents(size_t b, int32_t* out, bool parallel) const;
  // This process's micro-batch gradients of bucket b in fixed point at the agreed exponents, summed exactly:
  // `out` has bucket.size() entries. `parallel`: spread over the TBB threads (false from a thread that is
  // not one of the pool's).
  void to_fixed(size_t b, const int32_t* exponents, int64_t* out, bool parallel) const;
  // The step's sums of bucket b (every process's to_fixed added) rounded to float into grads (the whole
  // flat buffer).
  void from_fixed(size_t b, const int32_t* exponents, const int64_t* sums, std::span<float> grads, bool parallel) const;
  // One process: every bucket through exponents, to_fixed and from_fixed, the last two fused block by block
  // (the same bits, without the int64 buffer's round trip through memory).
  void reduce_locally(std::span<float> grads);

  // Largest number of segments in a bucket (for exponent buffers).
  size_t max_segments() const { return max_segments_; }

 private:
  void keep(std::span<const float> grads, float* clear);  // clear: grads' own floats to zero, or null
  int32_t scale(int32_t exponent) const;  // the power of two a value is multiplied by
  // This process's micro-batch gradients over elements [i0, i1) of seg at the power of two `factor`, summed
  // into out[0, i1 - i0).
  void fixed_block(const SumSegment& seg, double factor, int64_t i0, int64_t i1, int64_t* out) const;

  // keep()'s pieces: ranges [begin, end) of the buffer that each lie inside one segment; the pieces of
  // segment s (numbered across buckets, SumBucket::first_segment) are segment_pieces_[s] up to
  // segment_pieces_[s + 1].
  struct CopyPiece {
    int64_t begin = 0, end = 0;
  };
  std::vector<CopyPiece> pieces_;
  std::vector<size_t> segment_pieces_;

  int64_t size_;
  std::vector<SumBucket> buckets_;
  size_t max_segments_ = 0;
  int64_t step_micro_batches_ = 1, local_ = 0, kept_count_ = 0;
  std::vector<float> kept_;  // kept_count_ gradients of size_ each
  std::vector<uint32_t> kept_largest_;  // per kept gradient and piece: its largest |value| as float bits
  std::span<const float> live_;
  std::vector<const float*> sources_;  // the kept gradients, then the live buffer: what to_fixed sums
  std::vector<int32_t> exps_;
};

}  // namespace stride
