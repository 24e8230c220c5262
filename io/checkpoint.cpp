#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/hdf5.hpp"
#include "io/hdf5_structure.hpp"

namespace stride {
namespace {

using h5::check;
using h5::Handle;

void write_array(hid_t file, const std::string& path, const StoredArray& a) {
  h5::write_float_array(file, path, a.shape, a.values.data(), "checkpoint");
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw IoError("cannot open for fsync: " + std::string(std::strerror(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError("fsync failed: " + std::string(std::strerror(err)));
}

// Creates `path` with `bytes`, fsynced; throws IoError with errno's reason (ENOSPC, EFBIG, EACCES, ...).
void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IoError("cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw IoError("writing " + std::to_string(bytes.size()) + " bytes failed after " + std::to_string(done) + ": " +
                    std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  if (::close(fd) != 0 || rc != 0) throw IoError(std::string("fsync/close failed: ") + std::strerror(rc ? err : errno));
}

// ---- reading ----

StoredArray read_array(hid_t file, const std::string& path, const std::string& filename) {
  StoredArray a;
  a.shape = h5::read_float_array(file, path, a.values, filename);
  return a;
}

// An optional (C) array; empty when absent.
std::vector<float> read_optional_vector(hid_t file, const std::string& path, const std::string& filename) {
  if (!h5::exists(file, path)) return {};
  return read_array(file, path, filename).values;
}

Handle open_for_reading(const std::string& path, const char* kind) {
  if (!std::filesystem::exists(path)) throw IoError(path + ": no such " + kind + " file");
  if (!std::filesystem::is_regular_file(path)) throw IoError(path + ": not a regular file");
  h5::check_structure(path);  // before libhdf5 reads a byte of it
  return check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
               path + ": cannot open as HDF5 (truncated or corrupt?)");
}

// What checkpoints and weights files share: /params, and the optional /normalization, class_names and
// model_spec.
void read_weight_fields(hid_t f, const std::string& path, Checkpoint& c) {
  if (h5::has_attr(f, "class_names")) c.class_names = h5::read_strings_attr(f, "class_names", path);
  c.norm_mean = read_optional_vector(f, "/normalization/mean", path);
  c.norm_std = read_optional_vector(f, "/normalization/std", path);
  if (c.norm_mean.size() != c.norm_std.size())
    throw IoError(path + ": /normalization/mean holds " + std::to_string(c.norm_mean.size()) +
                  " values and /normalization/std " + std::to_string(c.norm_std.size()) +
                  "; expected one per channel in both");
  // The input is (p/255 - mean) / std: a zero, negative or non-finite std (or a non-finite mean) would turn
  // every input into infinities and every loss into NaN.
  for (size_t i = 0; i < c.norm_std.size(); ++i)
    if (!std::isfinite(c.norm_mean[i]) || !std::isfinite(c.norm_std[i]) || !(c.norm_std[i] > 0.0f))
      throw IoError(path + ": /normalization of channel " + std::to_string(i) + " is mean " +
                    std::to_string(c.norm_mean[i]) + ", std " + std::to_string(c.norm_std[i]) +
                    "; expected a finite mean and a finite std > 0");
  const auto names = h5::list_datasets(f, "/params");
  if (names.empty()) throw IoError(path + ": no datasets under /params");
  int64_t total = 0;
  for (const auto& name : names) {
    StoredArray& a = c.params[name] = read_array(f, "/params/" + name, path);
    total += static_cast<int64_t>(a.values.size() * sizeof(float));
    check_memory(total, path + ": /params");
  }
}

}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  h5::QuietErrors quiet;
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& why) -> IoError {
    std::error_code ec;
    fs::remove(tmp, ec);
    return IoError(path + ": checkpoint not written (" + why + "); any earlier file is untouched");
  };
  try {
    // The file is built in memory (HDF5's core driver, no backing store) and written out with plain POSIX
    // calls. HDF5 1.10 keeps a file whose close failed (disk full) in its ID table and crashes at exit
    // trying to close it again; in memory nothing can fail that way, and errno from write() says exactly
    // why a write failed. It costs one extra copy of the checkpoint in memory while writing.
    std::vector<unsigned char> image;
    {
      const std::string what = "checkpoint";
      Handle fapl = check(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access properties");
      check(H5Pset_fapl_core(fapl.get(), size_t{1} << 20, /*backing_store=*/0), "in-memory file driver");
      Handle file = check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                          "cannot create the in-memory file");
      const hid_t f = file.get();
      h5::write_string_attr(f, "format", kCheckpointFormat, what);
      h5::write_scalar_attr<int64_t>(f, "version", ckpt.version, what);
      h5::write_string_attr(f, "stride_version", ckpt.stride_version, what);
      h5::write_scalar_attr<int64_t>(f, "epoch", ckpt.epoch, what);
      h5::write_scalar_attr<int64_t>(f, "step", ckpt.step, what);
      h5::write_scalar_attr<int64_t>(f, "samples_seen", ckpt.samples_seen, what);
      h5::write_scalar_attr<uint64_t>(f, "seed", ckpt.seed, what);
      h5::write_scalar_attr<double>(f, "wall_time", ckpt.wall_time, what);
      h5::write_string_attr(f, "model_spec", ckpt.model_spec, what);
      h5::write_string_attr(f, "run_config", ckpt.run_config, what);
      h5::write_strings_attr(f, "class_names", ckpt.class_names, what);
      if (!ckpt.norm_mean.empty()) {
        const Shape channels{static_cast<int64_t>(ckpt.norm_mean.size())};
        h5::write_float_array(f, "/normalization/mean", channels, ckpt.norm_mean.data(), what);
        h5::write_float_array(f, "/normalization/std", channels, ckpt.norm_std.data(), what);
      }
      for (const auto& [name, a] : ckpt.params) write_array(f, "/params/" + name, a);
      if (!ckpt.optimizer_kind.empty()) {
        Handle g = check(H5Gcreate2(f, "/optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "/optimizer");
        h5::write_string_attr(g.get(), "kind", ckpt.optimizer_kind, what);
        h5::write_scalar_attr<int64_t>(g.get(), "steps", ckpt.optimizer_steps, what);
        for (const auto& [name, a] : ckpt.optimizer) write_array(f, "/optimizer/" + name, a);
      }
      if (ckpt.has_progress) {
        const TrainingProgress& p = ckpt.progress;
        Handle g = check(H5Gcreate2(f, "/progress", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "/progress");
        const hid_t pg = g.get();
        h5::write_scalar_attr<double>(pg, "epoch_loss_sum", p.epoch_loss_sum, what);
        h5::write_scalar_attr<int64_t>(pg, "epoch_correct", p.epoch_correct, what);
        h5::write_scalar_attr<double>(pg, "window_loss_sum", p.window_loss_sum, what);
        h5::write_scalar_attr<int64_t>(pg, "window_correct", p.window_correct, what);
        h5::write_scalar_attr<int64_t>(pg, "window_count", p.window_count, what);
        h5::write_scalar_attr<int64_t>(pg, "window_steps", p.window_steps, what);
        h5::write_scalar_attr<double>(pg, "test_accuracy", p.test_accuracy, what);
        h5::write_scalar_attr<double>(pg, "test_loss", p.test_loss, what);
        h5::write_scalar_attr<double>(pg, "next_lr", p.next_lr, what);
      }
      if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) throw IoError("flush failed");
      const ssize_t size = H5Fget_file_image(f, nullptr, 0);
      if (size <= 0) throw IoError("cannot get the file image");
      image.resize(static_cast<size_t>(size));
      if (H5Fget_file_image(f, image.data(), image.size()) != size) throw IoError("cannot get the file image");
      if (!file.close()) throw IoError("close failed");
    }
    write_file(tmp, image);
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) throw IoError("rename failed: " + ec.message());
    fsync_path(dir.string(), true);
  } catch (const IoError& e) {
    throw fail(e.what());
  }
}

namespace {

// Everything of a file whose format attribute says "stride-checkpoint".
// Without `with_optimizer` (eval, predict, --init) the optimizer slots are not read at all.
Checkpoint read_checkpoint_contents(hid_t f, const std::string& path, bool with_optimizer) {
  Checkpoint c;
  c.version = h5::read_scalar_attr<int64_t>(f, "version", path);
  if (c.version < kOldestReadableCheckpointVersion || c.version > kCheckpointVersion)
    throw IoError(path + ": attribute 'version': expected " + std::to_string(kOldestReadableCheckpointVersion) + ".." +
                  std::to_string(kCheckpointVersion) + ", got " + std::to_string(c.version) +
                  (c.version > kCheckpointVersion ? " (written by a newer stride)" : ""));
  c.stride_version = h5::read_string_attr(f, "stride_version", path);
  c.epoch = h5::read_scalar_attr<int64_t>(f, "epoch", path);
  c.step = h5::read_scalar_attr<int64_t>(f, "step", path);
  c.samples_seen = h5::read_scalar_attr<int64_t>(f, "samples_seen", path);
  c.seed = h5::read_scalar_attr<uint64_t>(f, "seed", path);
  c.wall_time = h5::read_scalar_attr<double>(f, "wall_time", path);
  c.model_spec = h5::read_string_attr(f, "model_spec", path);
  c.run_config = h5::read_string_attr(f, "run_config", path);
  read_weight_fields(f, path, c);
  if (with_optimizer && h5::exists(f, "/optimizer")) {
    Handle g = check(H5Gopen2(f, "/optimizer", H5P_DEFAULT), H5Gclose, path + ": /optimizer");
    c.optimizer_kind = h5::read_string_attr(g.get(), "kind", path);
    c.optimizer_steps = h5::read_scalar_attr<int64_t>(g.get(), "steps", path);
    int64_t total = 0;
    for (const auto& name : h5::list_datasets(f, "/optimizer")) {
      StoredArray& a = c.optimizer[name] = read_array(f, "/optimizer/" + name, path);
      total += static_cast<int64_t>(a.values.size() * sizeof(float));
      check_memory(total, path + ": /optimizer");
    }
  }
  if (c.version >= 2) {
    if (!h5::exists(f, "/progress")) throw IoError(path + ": missing group /progress (version 2 has one)");
    Handle g = check(H5Gopen2(f, "/progress", H5P_DEFAULT), H5Gclose, path + ": /progress");
    const hid_t pg = g.get();
    TrainingProgress& p = c.progress;
    p.epoch_loss_sum = h5::read_scalar_attr<double>(pg, "epoch_loss_sum", path);
    p.epoch_correct = h5::read_scalar_attr<int64_t>(pg, "epoch_correct", path);
    p.window_loss_sum = h5::read_scalar_attr<double>(pg, "window_loss_sum", path);
    p.window_correct = h5::read_scalar_attr<int64_t>(pg, "window_correct", path);
    p.window_count = h5::read_scalar_attr<int64_t>(pg, "window_count", path);
    p.window_steps = h5::read_scalar_attr<int64_t>(pg, "window_steps", path);
    p.test_accuracy = h5::read_scalar_attr<double>(pg, "test_accuracy", path);
    p.test_loss = h5::read_scalar_attr<double>(pg, "test_loss", path);
    p.next_lr = h5::read_scalar_attr<double>(pg, "next_lr", path);
    c.has_progress = true;
  }
  if (c.epoch < 0 || c.step < 0 || c.samples_seen < 0)
    throw IoError(path + ": negative epoch, step or samples_seen (" + std::to_string(c.epoch) + ", " +
                  std::to_string(c.step) + ", " + std::to_string(c.samples_seen) + ")");
  return c;
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  h5::QuietErrors quiet;
  Handle file = open_for_reading(path, "checkpoint");
  const std::string format = h5::read_string_attr(file.get(), "format", path);
  if (format != kCheckpointFormat)
    throw IoError(path + ": attribute 'format': expected \"" + std::string(kCheckpointFormat) + "\", got \"" + format + "\"");
  return read_checkpoint_contents(file.get(), path, /*with_optimizer=*/true);
}

Checkpoint read_weights(const std::string& path) {
  h5::QuietErrors quiet;
  Handle file = open_for_reading(path, "weights");
  const hid_t f = file.get();
  // A file written by hand with h5py may have no format attribute: it is read as weights.
  const std::string format = h5::has_attr(f, "format") ? h5::read_string_attr(f, "format", path) : kWeightsFormat;
  if (format == kCheckpointFormat) return read_checkpoint_contents(f, path, /*with_optimizer=*/true);
  if (format != kWeightsFormat)
    throw IoError(path + ": attribute 'format': expected \"" + std::string(kWeightsFormat) + "\" or \"" +
                  kCheckpointFormat + "\", got \"" + format + "\"");
  Checkpoint c;
  c.version = 0;
  if (h5::has_attr(f, "version")) {
    const auto version = h5::read_scalar_attr<int64_t>(f, "version", path);
    if (version != kWeightsVersion)
      throw IoError(path + ": attribute 'version': expected " + std::to_string(kWeightsVersion) + " for a \"" +
                    kWeightsFormat + "\" file, got " + std::to_string(version));
  }
  if (h5::has_attr(f, "model_spec")) c.model_spec = h5::read_string_attr(f, "model_spec", path);
  read_weight_fields(f, path, c);
  return c;
}

StoredBytes locate_dataset_bytes(const std::string& path, const std::string& dataset) {
  h5::QuietErrors quiet;
  Handle file = check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path + ": cannot open");
  Handle ds = check(H5Dopen2(file.get(), dataset.c_str(), H5P_DEFAULT), H5Dclose, path + ": no dataset " + dataset);
  Handle space = check(H5Dget_space(ds.get()), H5Sclose, path + ": " + dataset);
  // Checkpoint datasets are chunked (Fletcher32 needs chunks), where H5Dget_offset says HADDR_UNDEF; the
  // chunk index gives the address instead.
  haddr_t addr = H5Dget_offset(ds.get());
  if (addr != HADDR_UNDEF) return StoredBytes{addr, H5Dget_storage_size(ds.get())};
  hsize_t offset[Shape::max_rank] = {};
  unsigned filter_mask = 0;
  hsize_t size = 0;
  check(H5Dget_chunk_info(ds.get(), space.get(), 0, offset, &filter_mask, &addr, &size), path + ": chunk info of " + dataset);
  return StoredBytes{addr, size};
}

}  // namespace stride
