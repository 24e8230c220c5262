#pragma once
// The one HDF5 layer of io/: owned handles, one scoped way to keep HDF5 from printing its error stack, and
// the attribute and dataset helpers that checkpoints, weights files and datasets share. Every failure becomes
// an IoError whose message starts with `what` (file and object) and ends with HDF5's own innermost reason.
//
// Only io/*.cpp include this header: hdf5.h stays inside io/ (tests/test_architecture.cpp checks it).
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "framework/core/shape.hpp"

namespace stride::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { close(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether the close succeeded (a close can be where a full disk shows up).
  bool close();

 private:
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = nullptr;
};

// HDF5 prints its error stack to stderr by default; stride turns failures into IoError instead. The setting is
// per thread in Debian's thread-safe build, so every entry point of io/ that calls HDF5 holds one of these for
// its lifetime; the previous setting comes back when it ends.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// Throws IoError(what + " (HDF5: <innermost message>)") and clears HDF5's error stack.
[[noreturn]] void fail(const std::string& what);
// An owned handle for `id`, or fail(what) when the call that made it failed.
Handle check(hid_t id, herr_t (*closer)(hid_t), const std::string& what);
void check(herr_t status, const std::string& what);

// Whether a link (group or dataset) exists at `path`, every intermediate group included.
bool exists(hid_t file, const std::string& path);
bool has_attr(hid_t obj, const char* name);

// "uint8", "float32", "string", ... and "(3, 32, 32)", for messages.
std::string type_name(hid_t type);
std::string dims_text(const std::vector<hsize_t>& dims);

// ---- attributes ----

template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, uint64_t>) return H5T_NATIVE_UINT64;
  else if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  else static_assert(std::is_same_v<T, float>, "an attribute type this layer does not know");
  return H5T_NATIVE_FLOAT;
}

// A variable-length UTF-8 string, scalar.
void write_string_attr(hid_t obj, const char* name, const std::string& value, const std::string& what);
// A 1-D array of variable-length UTF-8 strings.
void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& values, const std::string& what);
// A scalar number stored with `file_type` (e.g. H5T_STD_I64LE); default: the native type of T.
template <typename T>
void write_scalar_attr(hid_t obj, const char* name, T value, const std::string& what, hid_t file_type = -1) {
  Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, what + ": scalar space");
  Handle attr = check(H5Acreate2(obj, name, file_type >= 0 ? file_type : native_type<T>(), space.get(), H5P_DEFAULT,
                                 H5P_DEFAULT),
                      H5Aclose, what + ": cannot create attribute " + name);
  check(H5Awrite(attr.get(), native_type<T>(), &value), what + ": cannot write attribute " + name);
}

// Every string of a string attribute, scalar or 1-D, variable- or fixed-length (h5py may write either).
// Throws IoError when the attribute is missing or holds no strings.
std::vector<std::string> read_strings_attr(hid_t obj, const char* name, const std::string& what);
// A string attribute holding exactly one string.
std::string read_string_attr(hid_t obj, const char* name, const std::string& what);
[[noreturn]] void throw_missing_attr(const char* name, const std::string& what);
// A scalar numeric attribute converted to T by HDF5; an IoError names the attribute when it is missing or of
// a type HDF5 cannot convert.
template <typename T>
T read_scalar_attr(hid_t obj, const char* name, const std::string& what) {
  if (!has_attr(obj, name)) throw_missing_attr(name, what);
  Handle attr = check(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, what + ": cannot open attribute " + name);
  T value{};
  check(H5Aread(attr.get(), native_type<T>(), &value), what + ": attribute '" + name + "' has the wrong type");
  return value;
}
// ---- reading untrusted files ----
// libhdf5 trusts the sizes and addresses it decodes, so every reader of io/ first passes the file through
// check_structure() (io/hdf5_structure.hpp), in this process, and only then opens it with libhdf5.

// ---- what a file may promise ----

// Throws IoError naming `where` unless every byte of the open dataset is stored in its file, so a reader
// never trusts dimensions that the file does not back: contiguous data must be allocated and end inside the
// file; chunked data must have every chunk written (an unwritten dataset of 2^26 images would read as fill
// values), no more than kMaxExpansion times its stored bytes when filtered, and stored bytes within the
// file's size. External and virtual storage (which would read other files) are refused. `logical_bytes` is
// the dataset's element count times the size read into memory.
void check_stored(hid_t dataset, int64_t logical_bytes, const std::string& where);
// The element count of a dataspace's dims, or an IoError naming `where` when it does not fit in int64.
int64_t element_count(const std::vector<hsize_t>& dims, const std::string& where);

// ---- float datasets (checkpoints and weights files) ----

// Writes a float32 little-endian dataset at `path` (intermediate groups created), chunked with the Fletcher32
// checksum so HDF5 refuses to return bytes that changed: one chunk per array, or slices of the first
// dimension for arrays over 2^26 elements (HDF5 caps a chunk at 4 GiB). An empty array has no chunks.
void write_float_array(hid_t file, const std::string& path, const Shape& shape, const float* data,
                       const std::string& what);
// Reads a float dataset of rank 1..4 into `values`; returns its shape. `what` names the file. The dataset is
// checked with check_stored and its size with check_memory before anything is allocated.
Shape read_float_array(hid_t file, const std::string& path, std::vector<float>& values, const std::string& what);
// The datasets below `group`, as paths relative to it ("conv1/weight"), in name order; none when the group
// does not exist.
std::vector<std::string> list_datasets(hid_t file, const std::string& group);

}  // namespace stride::h5
