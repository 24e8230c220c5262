#include "io/idx.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <memory>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"

namespace stride {
namespace {

// Reads through zlib's gz* functions, which also read plain files transparently; `gzip_` only changes
// the messages (and whether the total size is known up front).
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    // A regular file only: its size bounds what it can promise, and a pipe or device never ends.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw IoError(path + ": cannot open IDX file: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw IoError(path + ": not a regular file");
    stored_ = static_cast<int64_t>(st.st_size);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw IoError(path + ": cannot open IDX file: " + std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    const size_t n = std::fread(magic, 1, 2, f);
    std::fclose(f);
    gzip_ = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw IoError(path + ": cannot open IDX file");
    gzbuffer(file_, 1 << 17);
  }
  ~ByteReader() {
    if (file_) gzclose(file_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Reads up to n bytes; returns how many arrived (fewer only at the end of the data).
  int64_t read(uint8_t* out, int64_t n) {
    int64_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(std::min<int64_t>(n - done, int64_t{1} << 30));
      const int got = gzread(file_, out + done, want);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        throw IoError(path_ + ": corrupt gzip data near uncompressed offset " + std::to_string(offset_ + done) + " (" +
                      (msg ? msg : "zlib error") + ")");
      }
      if (got == 0) break;
      done += got;
    }
    offset_ += done;
    return done;
  }
  // zlib reports a gzip stream cut short only through gzerror after the last read; "" when the stream is fine.
  std::string stream_error() {
    int code = Z_OK;
    const char* msg = gzerror(file_, &code);
    if (code == Z_OK || code == Z_STREAM_END) return {};
    return std::string(" (zlib: ") + (msg ? msg : "error") + ")";
  }
  void check_stream_end() {
    const std::string err = stream_error();
    if (!err.empty())
      throw IoError(path_ + ": gzip stream is corrupt after uncompressed offset " + std::to_string(offset_) + err);
  }
  bool gzip() const { return gzip_; }
  int64_t offset() const { return offset_; }
  int64_t stored_bytes() const { return stored_; }  // the file's size on disk

 private:
  std::string path_;
  gzFile file_ = nullptr;
  bool gzip_ = false;
  int64_t offset_ = 0, stored_ = 0;
};

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

namespace {

// An IDX file opened and its header read: the dims are checked against what the file can hold before any
// payload is read or allocated.
struct IdxReader {
  ByteReader in;
  std::string what;  // "path" or "path (gzip)", for messages
  int64_t header_bytes = 0, total = 0;
  std::vector<int64_t> dims;

  IdxReader(const std::string& path, int rank) : in(path), what(path + (in.gzip() ? " (gzip)" : "")) {
    uint8_t header[4 + 4 * 4];
    header_bytes = 4 + 4 * int64_t{rank};
    // The magic first, so a labels file passed as images is reported as such rather than as truncated.
    int64_t got = in.read(header, 4);
    if (got == 4) {
      const uint32_t magic = be32(header);
      const uint32_t expected_magic = 0x00000800u | static_cast<uint32_t>(rank);
      if (magic != expected_magic)
        throw IoError(what + ": bad magic number at offset 0: expected " + hex32(expected_magic) + " (uint8, rank " +
                      std::to_string(rank) + "), found " + hex32(magic));
      got += in.read(header + 4, header_bytes - 4);
    }
    if (got < header_bytes)
      throw IoError(what + ": truncated IDX header: expected " + std::to_string(header_bytes) + " bytes, found " +
                    std::to_string(got) + in.stream_error());
    total = 1;
    for (int d = 0; d < rank; ++d) {
      const int64_t dim = be32(header + 4 + 4 * d);
      // A zero count is legal IDX but an empty split is always a mistake in a training set; zero H or W is
      // never an image.
      if (dim == 0)
        throw IoError(what + ": dimension " + std::to_string(d) + " (offset " + std::to_string(4 + 4 * d) + ") is 0");
      dims.push_back(dim);
      // Checked: 2^40 times a 32-bit dim overflows int64 (found by fuzz_idx, tests/corpus/idx/).
      const auto next = mul_sizes(total, dim);
      if (!next || *next > (int64_t{1} << 40)) throw IoError(what + ": dimensions are implausibly large");
      total = *next;
    }
    const int64_t stored = in.stored_bytes();
    if (!in.gzip()) {
      // A plain file holds its payload: its size says at once whether the dims are true.
      if (stored < header_bytes + total)
        throw IoError(what + ": truncated data at offset " + std::to_string(stored) + ": expected " +
                      std::to_string(header_bytes + total) + " bytes in total, found " + std::to_string(stored));
      if (stored > header_bytes + total)
        throw IoError(what + ": unexpected bytes after offset " + std::to_string(header_bytes + total) +
                      ": expected exactly " + std::to_string(header_bytes + total) + " bytes, found " +
                      std::to_string(stored));
    } else {
      check_expansion(header_bytes + total, stored, what);
    }
    check_memory(total, what + ": " + std::to_string(total) + "-byte payload");
  }

  // The payload, read against the promised size. A gzip stream's buffer grows with the bytes that actually
  // arrive, so a header that lies costs only what the stream really holds; the first byte past the promise
  // is an error.
  std::vector<uint8_t> payload() {
    std::vector<uint8_t> data;
    int64_t have = 0;
    while (have < total) {
      const int64_t step = in.gzip() ? std::min(total - have, std::max<int64_t>(have, int64_t{1} << 20)) : total;
      data.resize(static_cast<size_t>(have + step));
      const int64_t got = in.read(data.data() + have, step);
      have += got;
      if (got < step)
        throw IoError(what + ": truncated data at offset " + std::to_string(header_bytes + have) + ": expected " +
                      std::to_string(header_bytes + total) + " bytes in total, found " +
                      std::to_string(header_bytes + have) + in.stream_error());
    }
    uint8_t extra[1];
    if (in.read(extra, 1) != 0)
      throw IoError(what + ": unexpected bytes after offset " + std::to_string(header_bytes + total) +
                    ": expected exactly " + std::to_string(header_bytes + total) + " bytes");
    in.check_stream_end();
    return data;
  }
};

}  // namespace

IdxArray read_idx(const std::string& path, int rank) {
  IdxReader r(path, rank);
  IdxArray a;
  a.dims = r.dims;
  a.data = r.payload();
  return a;
}

std::vector<std::string> digit_class_names() { return numbered_class_names(10); }

std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

InMemoryDataset read_idx_split(const std::string& images_path, const std::string& labels_path,
                               std::vector<std::string> class_names) {
  if (class_names.empty()) class_names = digit_class_names();
  // Both headers before either payload: counts that disagree are found before a byte of data is decoded.
  IdxReader image_file(images_path, 3), label_file(labels_path, 1);
  if (image_file.dims[0] != label_file.dims[0])
    throw IoError(images_path + ": holds " + std::to_string(image_file.dims[0]) + " images but " + labels_path +
                  " holds " + std::to_string(label_file.dims[0]) + " labels");
  IdxArray images{image_file.dims, image_file.payload()};
  IdxArray labels{label_file.dims, label_file.payload()};
  check_label_range(labels.data, static_cast<int64_t>(class_names.size()), labels_path);
  DatasetInfo info;
  info.count = images.dims[0];
  info.channels = 1;
  info.height = images.dims[1];
  info.width = images.dims[2];
  info.class_names = std::move(class_names);
  info.source = images_path;
  return InMemoryDataset(std::move(info), std::move(images.data), std::move(labels.data));
}

std::string find_idx_file(const std::string& dir, const std::string& stem) {
  const auto plain = std::filesystem::path(dir) / stem;
  if (std::filesystem::is_regular_file(plain)) return plain.string();
  const auto gz = std::filesystem::path(dir) / (stem + ".gz");
  if (std::filesystem::is_regular_file(gz)) return gz.string();
  return {};
}

DatasetSplits load_idx_dir(const std::string& dir, std::vector<std::string> class_names) {
  auto need = [&](const std::string& stem) {
    std::string p = find_idx_file(dir, stem);
    if (p.empty()) throw IoError((std::filesystem::path(dir) / stem).string() + "[.gz]: missing IDX file");
    return p;
  };
  const std::string tri = need("train-images-idx3-ubyte"), trl = need("train-labels-idx1-ubyte");
  const std::string tei = need("t10k-images-idx3-ubyte"), tel = need("t10k-labels-idx1-ubyte");
  DatasetSplits splits;
  splits.train = std::make_unique<InMemoryDataset>(read_idx_split(tri, trl, class_names));
  splits.test = std::make_unique<InMemoryDataset>(read_idx_split(tei, tel, class_names));
  return splits;
}

}  // namespace stride
