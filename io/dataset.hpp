#pragma once
// The dataset interface the input pipeline reads: uint8 images (C, H, W planar, one after another) and all
// labels in memory. Readers of file formats (CIFAR binary, IDX, HDF5) produce SampleSources; the pipeline
// never sees a format.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace stride {

struct DatasetInfo {
  int64_t count = 0, channels = 0, height = 0, width = 0;
  std::vector<std::string> class_names;  // label l names class_names[l]
  std::string source;                    // where the samples came from (file, directory, URL)

  int64_t image_bytes() const { return channels * height * width; }
  // "(N=5085, C=3, H=32, W=32)", for messages.
  std::string shape_str() const;
};

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual const DatasetInfo& info() const = 0;
  // One label per sample, all in memory; each < info().class_names.size().
  virtual const std::vector<uint8_t>& labels() const = 0;
  // Copies images [first, first + count) into out (count * C * H * W bytes, CHW each). Throws IoError when
  // the range is outside [0, info().count) or the underlying file cannot be read. Safe to call from several
  // threads at once.
  virtual void read_images(int64_t first, int64_t count, uint8_t* out) const = 0;
  // Bytes this source keeps in memory (images and labels read whole, caches), for the memory plan.
  virtual int64_t resident_bytes() const { return 0; }
};

// A split held fully in memory: what the CIFAR and IDX readers return, and what tests build by hand.
class InMemoryDataset : public SampleSource {
 public:
  // Validates sizes (images = count * C * H * W bytes, labels = count) and label range; throws IoError
  // naming info.source.
  InMemoryDataset(DatasetInfo info, std::vector<uint8_t> images, std::vector<uint8_t> labels);

  const DatasetInfo& info() const override { return info_; }
  const std::vector<uint8_t>& labels() const override { return labels_; }
  void read_images(int64_t first, int64_t count, uint8_t* out) const override;
  const std::vector<uint8_t>& images() const { return images_; }
  int64_t resident_bytes() const override { return static_cast<int64_t>(images_.size() + labels_.size()); }

 private:
  DatasetInfo info_;
  std::vector<uint8_t> images_, labels_;
};

struct DatasetSplits {
  std::unique_ptr<SampleSource> train, test;
};

// Throws IoError "<source>: read_images(first=.., count=..) outside the N samples" unless the range fits.
void check_read_range(const DatasetInfo& info, int64_t first, int64_t count);

// Throws IoError naming `what` (file, dataset) and the first sample whose label is >= class_count.
void check_label_range(const std::vector<uint8_t>& labels, int64_t class_count, const std::string& what);

// "0", "1", ..., "k-1": names for data that came without any.
std::vector<std::string> numbered_class_names(int64_t k);

}  // namespace stride
