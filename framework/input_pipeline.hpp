#pragma once
// From stored uint8 images to a normalized, augmented float batch. Everything random about a sample is a
// pure function of (seed, epoch, dataset index, purpose), so batches do not depend on the thread count and a
// resumed run sees exactly the batches an uninterrupted one would.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "framework/core/tensor.hpp"
#include "framework/gradient_reducer.hpp"
#include "io/dataset.hpp"

namespace stride {

// The first `limit` samples of another source (quick runs, tests, --limit flags).
class PrefixSource final : public SampleSource {
 public:
  PrefixSource(const SampleSource& inner, int64_t limit);
  const DatasetInfo& info() const override { return info_; }
  const std::vector<uint8_t>& labels() const override { return labels_; }
  void read_images(int64_t first, int64_t count, uint8_t* out) const override;

 private:
  const SampleSource& inner_;
  DatasetInfo info_;
  std::vector<uint8_t> labels_;
};

// Per-channel mean and standard deviation of pixel/255 over a training set; applied as (p/255 - mean) / std.
struct Normalization {
  std::vector<float> mean, stddev;
};

// Channel c's normalization as one float multiply and one float add, x = pixel * scale + shift with
// scale = 1 / (255 std) and shift = -mean / std: how BatchAssembler (train, eval), predict and the ONNX export
// (framework/onnx_export.hpp) all compute it, so the three see the same input bits.
struct PixelAffine {
  float scale, shift;
};
PixelAffine pixel_affine(const Normalization& norm, int64_t c);

// Exact statistics over every pixel of `source` (sums in fixed-size blocks added in order: bit-identical for
// any thread count).
Normalization compute_normalization(const SampleSource& source);
// The same, each of the reducer's processes reading only its share of the blocks; the integer block sums are
// gathered, so every process gets the one-process result.
Normalization compute_normalization(const SampleSource& source, GradientReducer& reducer);

enum class Augment {
  none,
  crop_flip,  // random 32x32 crop of the image zero-padded by 4 pixels, and a random horizontal flip
};
Augment parse_augment(const std::string& name);  // "none" | "crop-flip"
std::string augment_name(Augment a);

// Dataset indices in the order epoch `epoch` visits them: a Fisher-Yates shuffle keyed by (seed, epoch), or
// 0..count-1 when shuffle is false.
std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, uint32_t epoch, bool shuffle);

class BatchAssembler {
 public:
  BatchAssembler(const SampleSource& source, Normalization norm, Augment augment, uint64_t seed);

  // Fills x (n, C, H, W) and labels for the given dataset indices of epoch `epoch`; x is resized (no
  // allocation once it has held a full batch).
  void assemble(std::span<const int64_t> indices, uint32_t epoch, Tensor& x, std::vector<int32_t>& labels) const;
  const SampleSource& source() const { return source_; }

 private:
  const SampleSource& source_;
  Normalization norm_;
  Augment augment_;
  uint64_t seed_;
  int64_t c_, h_, w_;
};

}  // namespace stride
