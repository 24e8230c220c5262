#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "framework/core/errors.hpp"

namespace stride {
namespace {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(closer_, o.closer_);
    return *this;
  }
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  // Closes now and reports whether the close succeeded (a close can be where a full disk shows up).
  bool close() {
    herr_t rc = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return rc >= 0;
  }

 private:
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = nullptr;
};

void quiet_hdf5() {
  static bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

Handle check(hid_t id, herr_t (*closer)(hid_t), const std::string& what) {
  if (id < 0) throw IoError(what);
  return Handle(id, closer);
}

void check(herr_t rc, const std::string& what) {
  if (rc < 0) throw IoError(what);
}

// ---- writing ----

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  Handle type = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle attr = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      std::string("attribute ") + name);
  const char* p = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &p), std::string("attribute ") + name);
}

void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& values) {
  Handle type = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  hsize_t n = values.size();
  Handle space = check(H5Screate_simple(1, &n, nullptr), H5Sclose, "string array space");
  Handle attr = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      std::string("attribute ") + name);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n) check(H5Awrite(attr.get(), type.get(), ptrs.data()), std::string("attribute ") + name);
}

template <typename T>
void write_scalar_attr(hid_t obj, const char* name, hid_t type, T value) {
  Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle attr = check(H5Acreate2(obj, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      std::string("attribute ") + name);
  check(H5Awrite(attr.get(), type, &value), std::string("attribute ") + name);
}

void write_array(hid_t file, const std::string& path, const Shape& shape, const float* data) {
  std::vector<hsize_t> dims;
  for (int i = 0; i < shape.rank; ++i) dims.push_back(static_cast<hsize_t>(shape[i]));
  if (dims.empty()) dims.push_back(0);
  Handle space = check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, path);
  Handle lcpl = check(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "link properties");
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dcpl = check(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "dataset properties");
  bool empty = false;
  for (hsize_t d : dims) empty = empty || d == 0;
  if (!empty) {
    // One chunk per array, or slices of the first dimension for arrays over 2^26 elements (HDF5 caps a
    // chunk at 4 GiB), so Fletcher32 can guard every byte.
    constexpr hsize_t kMaxChunk = hsize_t{1} << 26;
    std::vector<hsize_t> chunk = dims;
    hsize_t row = 1;
    for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kMaxChunk / row));
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_fletcher32(dcpl.get());
  }
  Handle ds = check(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                    H5Dclose, path);
  if (!empty && H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw IoError("writing " + path + " failed");
  if (!ds.close()) throw IoError("writing " + path + " failed");
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

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_string_attr(hid_t obj, const char* name, const std::string& file) {
  if (!has_attr(obj, name)) throw IoError(file + ": missing attribute '" + name + "'");
  Handle attr = check(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, file + ": attribute " + name);
  Handle ftype = check(H5Aget_type(attr.get()), H5Tclose, file + ": attribute " + name);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    throw IoError(file + ": attribute '" + std::string(name) + "': expected a string");
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));  // HDF5 converts no character sets
    char* p = nullptr;
    check(H5Aread(attr.get(), mtype.get(), &p), file + ": attribute " + name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  size_t size = H5Tget_size(ftype.get());
  std::string s(size, '\0');
  Handle mtype = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  H5Tset_size(mtype.get(), size);
  H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
  check(H5Aread(attr.get(), mtype.get(), s.data()), file + ": attribute " + name);
  return s.substr(0, s.find('\0'));
}

std::vector<std::string> read_strings_attr(hid_t obj, const char* name, const std::string& file) {
  if (!has_attr(obj, name)) return {};
  Handle attr = check(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, file + ": attribute " + name);
  Handle space = check(H5Aget_space(attr.get()), H5Sclose, file + ": attribute " + name);
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  Handle ftype = check(H5Aget_type(attr.get()), H5Tclose, file + ": attribute " + name);
  Handle mtype = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  H5Tset_size(mtype.get(), H5T_VARIABLE);
  H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
  std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
  if (n) check(H5Aread(attr.get(), mtype.get(), ptrs.data()), file + ": attribute " + name);
  std::vector<std::string> out;
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

template <typename T>
T read_scalar_attr(hid_t obj, const char* name, hid_t type, const std::string& file) {
  if (!has_attr(obj, name)) throw IoError(file + ": missing attribute '" + name + "'");
  Handle attr = check(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, file + ": attribute " + name);
  T value{};
  check(H5Aread(attr.get(), type, &value), file + ": attribute '" + std::string(name) + "' has the wrong type");
  return value;
}

StoredArray read_array(hid_t file, const std::string& path, const std::string& filename) {
  Handle ds = check(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, filename + ": cannot open " + path);
  Handle type = check(H5Dget_type(ds.get()), H5Tclose, filename + ": " + path);
  if (H5Tget_class(type.get()) != H5T_FLOAT)
    throw IoError(filename + ": " + path + ": expected float32 data");
  Handle space = check(H5Dget_space(ds.get()), H5Sclose, filename + ": " + path);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 1 || rank > Shape::max_rank) throw IoError(filename + ": " + path + ": unsupported rank " + std::to_string(rank));
  hsize_t dims[Shape::max_rank];
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  StoredArray a;
  a.shape.rank = rank;
  for (int i = 0; i < rank; ++i) a.shape[i] = static_cast<int64_t>(dims[i]);
  a.values.resize(static_cast<size_t>(a.shape.numel()));
  if (!a.values.empty() &&
      H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.values.data()) < 0)
    throw IoError(filename + ": " + path + ": read failed (checksum mismatch or truncated file)");
  return a;
}

// Every dataset below `group`, as paths relative to it ("conv1/weight").
std::vector<std::string> list_datasets(hid_t file, const std::string& group) {
  std::vector<std::string> names;
  if (H5Lexists(file, group.c_str(), H5P_DEFAULT) <= 0) return names;
  Handle g(H5Gopen2(file, group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) return names;
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  H5Ovisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit, &names);
  return names;
}

std::vector<float> read_float_vector(hid_t file, const std::string& path, const std::string& filename) {
  if (H5Lexists(file, path.c_str(), H5P_DEFAULT) <= 0) return {};
  return read_array(file, path, filename).values;
}

}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  quiet_hdf5();
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
      Handle fapl = check(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access properties");
      check(H5Pset_fapl_core(fapl.get(), size_t{1} << 20, /*backing_store=*/0), "in-memory file driver");
      Handle file = check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                          "cannot create the in-memory file");
      const hid_t f = file.get();
      write_string_attr(f, "format", kCheckpointFormat);
      write_scalar_attr<int64_t>(f, "version", H5T_NATIVE_INT64, ckpt.version);
      write_string_attr(f, "stride_version", ckpt.stride_version);
      write_scalar_attr<int64_t>(f, "epoch", H5T_NATIVE_INT64, ckpt.epoch);
      write_scalar_attr<int64_t>(f, "step", H5T_NATIVE_INT64, ckpt.step);
      write_scalar_attr<int64_t>(f, "samples_seen", H5T_NATIVE_INT64, ckpt.samples_seen);
      write_scalar_attr<uint64_t>(f, "seed", H5T_NATIVE_UINT64, ckpt.seed);
      write_scalar_attr<double>(f, "wall_time", H5T_NATIVE_DOUBLE, ckpt.wall_time);
      write_string_attr(f, "model_spec", ckpt.model_spec);
      write_string_attr(f, "run_config", ckpt.run_config);
      write_strings_attr(f, "class_names", ckpt.class_names);
      if (!ckpt.norm_mean.empty()) {
        write_array(f, "/normalization/mean", Shape{static_cast<int64_t>(ckpt.norm_mean.size())}, ckpt.norm_mean.data());
        write_array(f, "/normalization/std", Shape{static_cast<int64_t>(ckpt.norm_std.size())}, ckpt.norm_std.data());
      }
      for (const auto& [name, a] : ckpt.params) write_array(f, "/params/" + name, a.shape, a.values.data());
      if (!ckpt.optimizer_kind.empty()) {
        Handle g = check(H5Gcreate2(f, "/optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "/optimizer");
        write_string_attr(g.get(), "kind", ckpt.optimizer_kind);
        write_scalar_attr<int64_t>(g.get(), "steps", H5T_NATIVE_INT64, ckpt.optimizer_steps);
        for (const auto& [name, a] : ckpt.optimizer) write_array(f, "/optimizer/" + name, a.shape, a.values.data());
      }
      if (ckpt.has_progress) {
        const TrainingProgress& p = ckpt.progress;
        Handle g = check(H5Gcreate2(f, "/progress", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "/progress");
        write_scalar_attr<double>(g.get(), "epoch_loss_sum", H5T_NATIVE_DOUBLE, p.epoch_loss_sum);
        write_scalar_attr<int64_t>(g.get(), "epoch_correct", H5T_NATIVE_INT64, p.epoch_correct);
        write_scalar_attr<double>(g.get(), "window_loss_sum", H5T_NATIVE_DOUBLE, p.window_loss_sum);
        write_scalar_attr<int64_t>(g.get(), "window_correct", H5T_NATIVE_INT64, p.window_correct);
        write_scalar_attr<int64_t>(g.get(), "window_count", H5T_NATIVE_INT64, p.window_count);
        write_scalar_attr<int64_t>(g.get(), "window_steps", H5T_NATIVE_INT64, p.window_steps);
        write_scalar_attr<double>(g.get(), "test_accuracy", H5T_NATIVE_DOUBLE, p.test_accuracy);
        write_scalar_attr<double>(g.get(), "test_loss", H5T_NATIVE_DOUBLE, p.test_loss);
        write_scalar_attr<double>(g.get(), "next_lr", H5T_NATIVE_DOUBLE, p.next_lr);
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

Checkpoint read_checkpoint(const std::string& path) {
  quiet_hdf5();
  if (!std::filesystem::exists(path)) throw IoError(path + ": no such checkpoint file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw IoError(path + ": not an HDF5 file (truncated or corrupt?)");
  Handle file = check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                      path + ": cannot open as HDF5 (truncated or corrupt?)");
  const hid_t f = file.get();
  Checkpoint c;
  const std::string format = read_string_attr(f, "format", path);
  if (format != kCheckpointFormat)
    throw IoError(path + ": attribute 'format': expected \"" + std::string(kCheckpointFormat) + "\", got \"" + format + "\"");
  c.version = read_scalar_attr<int64_t>(f, "version", H5T_NATIVE_INT64, path);
  if (c.version < kOldestReadableCheckpointVersion || c.version > kCheckpointVersion)
    throw IoError(path + ": attribute 'version': expected " + std::to_string(kOldestReadableCheckpointVersion) + ".." +
                  std::to_string(kCheckpointVersion) + ", got " + std::to_string(c.version) +
                  (c.version > kCheckpointVersion ? " (written by a newer stride)" : ""));
  c.stride_version = read_string_attr(f, "stride_version", path);
  c.epoch = read_scalar_attr<int64_t>(f, "epoch", H5T_NATIVE_INT64, path);
  c.step = read_scalar_attr<int64_t>(f, "step", H5T_NATIVE_INT64, path);
  c.samples_seen = read_scalar_attr<int64_t>(f, "samples_seen", H5T_NATIVE_INT64, path);
  c.seed = read_scalar_attr<uint64_t>(f, "seed", H5T_NATIVE_UINT64, path);
  c.wall_time = read_scalar_attr<double>(f, "wall_time", H5T_NATIVE_DOUBLE, path);
  c.model_spec = read_string_attr(f, "model_spec", path);
  c.run_config = read_string_attr(f, "run_config", path);
  c.class_names = read_strings_attr(f, "class_names", path);
  c.norm_mean = read_float_vector(f, "/normalization/mean", path);
  c.norm_std = read_float_vector(f, "/normalization/std", path);
  const auto names = list_datasets(f, "/params");
  if (names.empty()) throw IoError(path + ": no datasets under /params");
  for (const auto& name : names) c.params[name] = read_array(f, "/params/" + name, path);
  if (H5Lexists(f, "/optimizer", H5P_DEFAULT) > 0) {
    Handle g = check(H5Gopen2(f, "/optimizer", H5P_DEFAULT), H5Gclose, path + ": /optimizer");
    c.optimizer_kind = read_string_attr(g.get(), "kind", path);
    c.optimizer_steps = read_scalar_attr<int64_t>(g.get(), "steps", H5T_NATIVE_INT64, path);
    for (const auto& name : list_datasets(f, "/optimizer")) c.optimizer[name] = read_array(f, "/optimizer/" + name, path);
  }
  if (c.version >= 2) {
    if (H5Lexists(f, "/progress", H5P_DEFAULT) <= 0) throw IoError(path + ": missing group /progress (version 2 has one)");
    Handle g = check(H5Gopen2(f, "/progress", H5P_DEFAULT), H5Gclose, path + ": /progress");
    TrainingProgress& p = c.progress;
    p.epoch_loss_sum = read_scalar_attr<double>(g.get(), "epoch_loss_sum", H5T_NATIVE_DOUBLE, path);
    p.epoch_correct = read_scalar_attr<int64_t>(g.get(), "epoch_correct", H5T_NATIVE_INT64, path);
    p.window_loss_sum = read_scalar_attr<double>(g.get(), "window_loss_sum", H5T_NATIVE_DOUBLE, path);
    p.window_correct = read_scalar_attr<int64_t>(g.get(), "window_correct", H5T_NATIVE_INT64, path);
    p.window_count = read_scalar_attr<int64_t>(g.get(), "window_count", H5T_NATIVE_INT64, path);
    p.window_steps = read_scalar_attr<int64_t>(g.get(), "window_steps", H5T_NATIVE_INT64, path);
    p.test_accuracy = read_scalar_attr<double>(g.get(), "test_accuracy", H5T_NATIVE_DOUBLE, path);
    p.test_loss = read_scalar_attr<double>(g.get(), "test_loss", H5T_NATIVE_DOUBLE, path);
    p.next_lr = read_scalar_attr<double>(g.get(), "next_lr", H5T_NATIVE_DOUBLE, path);
    c.has_progress = true;
  }
  if (c.epoch < 0 || c.step < 0 || c.samples_seen < 0)
    throw IoError(path + ": negative epoch, step or samples_seen (" + std::to_string(c.epoch) + ", " +
                  std::to_string(c.step) + ", " + std::to_string(c.samples_seen) + ")");
  return c;
}

StoredBytes locate_dataset_bytes(const std::string& path, const std::string& dataset) {
  quiet_hdf5();
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
