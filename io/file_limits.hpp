#pragma once
// Small files read whole (model specs, --config files, class-name lists): only regular files, and only up to
// a size cap checked against the file's real size before anything is read, so `--model /dev/zero` or a
// multi-gigabyte file fails at once instead of being read into memory.
#include <cstdint>
#include <optional>
#include <string>

namespace stride {

// Compressed data (gzip IDX, PNG, filtered HDF5 datasets) may promise at most kMaxExpansion times the bytes
// it is stored in, once past kFreeExpansion: real images compress 2-10x, while a decompression bomb expands
// up to 1032x (deflate's limit), so a 1 MB file cannot make a reader allocate a gigabyte.
inline constexpr int64_t kMaxExpansion = 100;
inline constexpr int64_t kFreeExpansion = int64_t{64} << 20;
// Throws IoError "<what>: promises N bytes from M stored bytes (over 100x)" when decoded exceeds both limits.
void check_expansion(int64_t decoded, int64_t stored, const std::string& what);

// Spec and config files are text of a few kilobytes; 16 MiB leaves room for generated specs.
inline constexpr int64_t kMaxTextFileBytes = int64_t{16} << 20;

// The bytes of `path`. Throws IoError "<what> <path>: ..." when it is missing, not a regular file (a
// directory, a device, a pipe), larger than max_bytes, or cannot be read.
std::string read_text_file(const std::string& path, const std::string& what, int64_t max_bytes = kMaxTextFileBytes);

// The size of a regular file, or nullopt when `path` is not one.
std::optional<int64_t> regular_file_size(const std::string& path);

}  // namespace stride
