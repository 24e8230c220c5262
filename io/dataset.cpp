#include "io/dataset.hpp"

#include <cstring>

#include "framework/core/errors.hpp"

namespace stride {

std::string DatasetInfo::shape_str() const {
  return "(N=" + std::to_string(count) + ", C=" + std::to_string(channels) + ", H=" + std::to_string(height) +
         ", W=" + std::to_string(width) + ")";
}

void check_read_range(const DatasetInfo& info, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first > info.count || count > info.count - first)
    throw IoError(info.source + ": read_images(first=" + std::to_string(first) + ", count=" + std::to_string(count) +
                  ") is outside the " + std::to_string(info.count) + " samples");
}

void check_label_range(const std::vector<uint8_t>& labels, int64_t class_count, const std::string& what) {
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= class_count)
      throw IoError(what + ": label of sample " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                    ", expected < " + std::to_string(class_count));
}

std::vector<std::string> numbered_class_names(int64_t k) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < k; ++i) names.push_back(std::to_string(i));
  return names;
}

InMemoryDataset::InMemoryDataset(DatasetInfo info, std::vector<uint8_t> images, std::vector<uint8_t> labels)
    : info_(std::move(info)), images_(std::move(images)), labels_(std::move(labels)) {
  if (info_.count < 0 || info_.channels <= 0 || info_.height <= 0 || info_.width <= 0)
    throw IoError(info_.source + ": invalid dataset shape " + info_.shape_str());
  const auto expected = static_cast<size_t>(info_.count * info_.image_bytes());
  if (images_.size() != expected)
    throw IoError(info_.source + ": expected " + std::to_string(expected) + " image bytes for " + info_.shape_str() +
                  ", got " + std::to_string(images_.size()));
  if (labels_.size() != static_cast<size_t>(info_.count))
    throw IoError(info_.source + ": expected " + std::to_string(info_.count) + " labels, got " +
                  std::to_string(labels_.size()));
  if (info_.class_names.empty()) {
    uint8_t top = 0;
    for (uint8_t l : labels_) top = l > top ? l : top;
    info_.class_names = numbered_class_names(int64_t{top} + 1);
  }
  check_label_range(labels_, static_cast<int64_t>(info_.class_names.size()), info_.source);
}

void InMemoryDataset::read_images(int64_t first, int64_t count, uint8_t* out) const {
  check_read_range(info_, first, count);
  if (count == 0) return;
  const int64_t bytes = info_.image_bytes();
  std::memcpy(out, images_.data() + first * bytes, static_cast<size_t>(count * bytes));
}

}  // namespace stride
