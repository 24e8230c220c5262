#include "framework/input_pipeline.hpp"

#include <cmath>

#include "framework/core/errors.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"

namespace stride {

PrefixSource::PrefixSource(const SampleSource& inner, int64_t limit) : inner_(inner), info_(inner.info()) {
  info_.count = std::min(limit, info_.count);
  labels_.assign(inner.labels().begin(), inner.labels().begin() + info_.count);
}

void PrefixSource::read_images(int64_t first, int64_t count, uint8_t* out) const {
  check_read_range(info_, first, count);
  inner_.read_images(first, count, out);
}

Normalization compute_normalization(const SampleSource& source) {
  LocalGradientReducer local;
  return compute_normalization(source, local);
}

Normalization compute_normalization(const SampleSource& source, GradientReducer& reducer) {
  const DatasetInfo& info = source.info();
  const int64_t n = info.count, C = info.channels, HW = info.height * info.width;
  if (n == 0) throw ConfigError("normalization: the training set '" + info.source + "' is empty");
  // Integer sums are exact, so blocks may be added in any order; 64-bit holds 2^63 / 255^2 pixels. A block's
  // sums (at most 256 * HW * 255^2) are exact in a double too, which is how processes exchange them.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = chunk_count(n, kBlock);
  const MicroBatchRange mine = reducer.share(blocks);
  const int64_t width = 2 * C;  // per block: C sums, C sums of squares
  std::vector<double> rows(static_cast<size_t>(mine.count * width)), all(static_cast<size_t>(blocks * width));
  parallel_for(mine.count, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint8_t> pixels;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t first = (mine.first + b) * kBlock, last = std::min(n, first + kBlock);
      pixels.resize(static_cast<size_t>((last - first) * C * HW));
      source.read_images(first, last - first, pixels.data());
      for (int64_t c = 0; c < C; ++c) {
        uint64_t s = 0, q = 0;
        for (int64_t i = 0; i < last - first; ++i) {
          const uint8_t* p = pixels.data() + (i * C + c) * HW;
          for (int64_t k = 0; k < HW; ++k) {
            s += p[k];
            q += static_cast<uint64_t>(p[k]) * p[k];
          }
        }
        rows[static_cast<size_t>(b * width + c)] = static_cast<double>(s);
        rows[static_cast<size_t>(b * width + C + c)] = static_cast<double>(q);
      }
    }
  });
  reducer.gather(rows, all, width, blocks);
  Normalization norm;
  for (int64_t c = 0; c < C; ++c) {
    uint64_t s = 0, q = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      s += static_cast<uint64_t>(all[static_cast<size_t>(b * width + c)]);
      q += static_cast<uint64_t>(all[static_cast<size_t>(b * width + C + c)]);
    }
    const double count = static_cast<double>(n * HW);
    const double mean = static_cast<double>(s) / count / 255.0;
    const double var = static_cast<double>(q) / count / (255.0 * 255.0) - mean * mean;
    norm.mean.push_back(static_cast<float>(mean));
    norm.stddev.push_back(static_cast<float>(std::sqrt(std::max(var, 1e-12))));
  }
  return norm;
}

Augment parse_augment(const std::string& name) {
  if (name == "none") return Augment::none;
  if (name == "crop-flip") return Augment::crop_flip;
  throw UsageError("--augment: expected none or crop-flip, got \"" + name.substr(0, 200) + "\"");
}

std::string augment_name(Augment a) { return a == Augment::none ? "none" : "crop-flip"; }

std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, uint32_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
  if (!shuffle) return order;
  const RandomStream rng(seed, Purpose::shuffle, epoch, 0);
  for (int64_t i = count - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i), static_cast<uint32_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

BatchAssembler::BatchAssembler(const SampleSource& source, Normalization norm, Augment augment, uint64_t seed)
    : source_(source), norm_(std::move(norm)), augment_(augment), seed_(seed) {
  const DatasetInfo& info = source.info();
  c_ = info.channels;
  h_ = info.height;
  w_ = info.width;
  if (static_cast<int64_t>(norm_.mean.size()) != c_ || static_cast<int64_t>(norm_.stddev.size()) != c_)
    throw ConfigError("normalization: has " + std::to_string(norm_.mean.size()) + " channels, the data '" +
                      info.source + "' has " + std::to_string(c_));
}

PixelAffine pixel_affine(const Normalization& norm, int64_t c) {
  const float stddev = norm.stddev[static_cast<size_t>(c)];
  return {1.0f / (255.0f * stddev), -norm.mean[static_cast<size_t>(c)] / stddev};
}

void BatchAssembler::assemble(std::span<const int64_t> indices, uint32_t epoch, Tensor& x,
                              std::vector<int32_t>& labels) const {
  const auto n = static_cast<int64_t>(indices.size());
  x.resize(Shape{n, c_, h_, w_});
  labels.resize(static_cast<size_t>(n));
  const auto& all_labels = source_.labels();
  constexpr int64_t kPad = 4;
  parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> pixels(static_cast<size_t>(c_ * h_ * w_));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t index = indices[static_cast<size_t>(i)];
      source_.read_images(index, 1, pixels.data());
      labels[static_cast<size_t>(i)] = all_labels[static_cast<size_t>(index)];
      int64_t dy = 0, dx = 0;
      bool flip = false;
      if (augment_ == Augment::crop_flip) {
        const RandomStream rng(seed_, Purpose::augment, epoch, static_cast<uint32_t>(index));
        dy = static_cast<int64_t>(rng.below(0, 2 * kPad + 1)) - kPad;
        dx = static_cast<int64_t>(rng.below(1, 2 * kPad + 1)) - kPad;
        flip = (rng.word(2) & 1u) != 0;
      }
      float* out = x.data() + i * c_ * h_ * w_;
      for (int64_t c = 0; c < c_; ++c) {
        const auto [scale, shift] = pixel_affine(norm_, c);
        const uint8_t* plane = pixels.data() + c * h_ * w_;
        for (int64_t r = 0; r < h_; ++r) {
          const int64_t sr = r + dy;
          for (int64_t q = 0; q < w_; ++q) {
            const int64_t sq = (flip ? w_ - 1 - q : q) + dx;
            // Zero padding happens in pixel space, before normalization, as torchvision's RandomCrop(padding=4).
            const float p = (sr >= 0 && sr < h_ && sq >= 0 && sq < w_) ? plane[sr * w_ + sq] : 0.0f;
            out[(c * h_ + r) * w_ + q] = p * scale + shift;
          }
        }
      }
    }
  });
}

}  // namespace stride
