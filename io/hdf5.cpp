#include "io/hdf5.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"

namespace stride::h5 {

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    close();
    id_ = std::exchange(o.id_, -1);
    closer_ = o.closer_;
  }
  return *this;
}

bool Handle::close() {
  const herr_t rc = id_ >= 0 && closer_ ? closer_(id_) : 0;
  id_ = -1;
  return rc >= 0;
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

namespace {
// The innermost message of the current error stack (the most specific reason HDF5 knows); clears the stack.
std::string detail() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e && e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string() : " (HDF5: " + msg + ")";
}

Handle vlen_utf8_string_type(const std::string& what) {
  Handle type = check(H5Tcopy(H5T_C_S1), H5Tclose, what + ": string type");
  check(H5Tset_size(type.get(), H5T_VARIABLE), what + ": string type");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), what + ": string type");
  return type;
}
}  // namespace

void fail(const std::string& what) { throw IoError(what + detail()); }

Handle check(hid_t id, herr_t (*closer)(hid_t), const std::string& what) {
  if (id < 0) fail(what);
  return Handle(id, closer);
}

void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

bool exists(hid_t file, const std::string& path) {
  // H5Lexists fails (rather than answering no) when an intermediate group is missing, so walk the path.
  for (size_t at = path.find('/', 1); ; at = path.find('/', at + 1)) {
    const std::string prefix = path.substr(0, at);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (at == std::string::npos) return true;
  }
}

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string type_name(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
    case H5T_FLOAT:
      return "float" + std::to_string(bits);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    default:
      return "a non-numeric type";
  }
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

int64_t element_count(const std::vector<hsize_t>& dims, const std::string& where) {
  int64_t n = 1;
  for (hsize_t d : dims) {
    const auto next = d > hsize_t(INT64_MAX) ? std::nullopt : mul_sizes(n, static_cast<int64_t>(d));
    if (!next) throw IoError(where + ": dimensions " + dims_text(dims) + " overflow int64");
    n = *next;
  }
  return n;
}

void check_stored(hid_t dataset, int64_t logical_bytes, const std::string& where) {
  Handle dcpl = check(H5Dget_create_plist(dataset), H5Pclose, where + ": creation properties");
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_VIRTUAL) throw IoError(where + ": a virtual dataset (data in other files) is not read");
  if (H5Pget_external_count(dcpl.get()) != 0)
    throw IoError(where + ": data stored in external files is not read");
  Handle file = check(H5Iget_file_id(dataset), H5Fclose, where + ": file");
  hsize_t file_size = 0;
  check(H5Fget_filesize(file.get(), &file_size), where + ": file size");
  const auto stored = static_cast<int64_t>(H5Dget_storage_size(dataset));
  if (logical_bytes == 0) return;
  if (stored > static_cast<int64_t>(file_size))
    throw IoError(where + ": claims " + std::to_string(stored) + " stored bytes in a file of " +
                  std::to_string(file_size));
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t addr = H5Dget_offset(dataset);
    if (addr == HADDR_UNDEF || stored < logical_bytes)
      throw IoError(where + ": only " + std::to_string(stored) + " of its " + std::to_string(logical_bytes) +
                    " bytes are written in the file");
    if (addr > file_size || file_size - addr < static_cast<hsize_t>(stored))
      throw IoError(where + ": its data (offset " + std::to_string(addr) + ", " + std::to_string(stored) +
                    " bytes) lies past the end of the " + std::to_string(file_size) + "-byte file");
    return;
  }
  if (layout != H5D_CHUNKED) return;  // compact: the data sits in the object header, inside the file
  Handle space = check(H5Dget_space(dataset), H5Sclose, where + ": dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 1 || rank > 32) throw IoError(where + ": unsupported rank " + std::to_string(rank));
  std::vector<hsize_t> dims(static_cast<size_t>(rank)), chunk(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  if (H5Pget_chunk(dcpl.get(), rank, chunk.data()) != rank) throw IoError(where + ": unreadable chunk layout");
  int64_t expected = 1;
  for (int i = 0; i < rank; ++i) {
    const hsize_t c = chunk[static_cast<size_t>(i)];
    if (c == 0) throw IoError(where + ": chunk dimension " + std::to_string(i) + " is 0");
    const auto next = mul_sizes(expected, static_cast<int64_t>((dims[static_cast<size_t>(i)] + c - 1) / c));
    if (!next) throw IoError(where + ": chunk count overflows");
    expected = *next;
  }
  hsize_t written = 0;
  check(H5Dget_num_chunks(dataset, space.get(), &written), where + ": chunk index");
  if (static_cast<int64_t>(written) != expected)
    throw IoError(where + ": only " + std::to_string(written) + " of its " + std::to_string(expected) +
                  " chunks are written in the file (the rest would read as fill values)");
  if (H5Pget_nfilters(dcpl.get()) > 0)
    check_expansion(logical_bytes, stored, where);
  else if (stored < logical_bytes)
    throw IoError(where + ": only " + std::to_string(stored) + " of its " + std::to_string(logical_bytes) +
                  " bytes are stored in the file");
}

void throw_missing_attr(const char* name, const std::string& what) {
  throw IoError(what + ": missing attribute '" + name + "'");
}

void write_string_attr(hid_t obj, const char* name, const std::string& value, const std::string& what) {
  Handle type = vlen_utf8_string_type(what);
  Handle space = check(H5Screate(H5S_SCALAR), H5Sclose, what + ": scalar space");
  Handle attr = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      what + ": cannot create attribute " + name);
  const char* p = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &p), what + ": cannot write attribute " + name);
}

void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& values, const std::string& what) {
  Handle type = vlen_utf8_string_type(what);
  const hsize_t n = values.size();
  Handle space = check(H5Screate_simple(1, &n, nullptr), H5Sclose, what + ": string array space");
  Handle attr = check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      what + ": cannot create attribute " + name);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n) check(H5Awrite(attr.get(), type.get(), ptrs.data()), what + ": cannot write attribute " + name);
}

std::vector<std::string> read_strings_attr(hid_t obj, const char* name, const std::string& what) {
  if (!has_attr(obj, name)) throw_missing_attr(name, what);
  Handle attr = check(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, what + ": cannot open attribute " + name);
  Handle type = check(H5Aget_type(attr.get()), H5Tclose, what + ": attribute " + name);
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw IoError(what + ": attribute '" + name + "': expected a string, found " + type_name(type.get()));
  Handle space = check(H5Aget_space(attr.get()), H5Sclose, what + ": attribute " + name);
  const auto n = static_cast<size_t>(std::max<hssize_t>(H5Sget_simple_extent_npoints(space.get()), 0));
  // Every element takes at least a byte of the attribute's stored data: a dataspace that claims more is a lie
  // that would otherwise size the buffers below.
  const auto stored = static_cast<size_t>(H5Aget_storage_size(attr.get()));
  if (n > stored || (H5Tis_variable_str(type.get()) <= 0 && H5Tget_size(type.get()) > 0 &&
                     n > stored / H5Tget_size(type.get())))
    throw IoError(what + ": attribute '" + name + "' claims " + std::to_string(n) + " strings in " +
                  std::to_string(stored) + " stored bytes");
  // The memory type keeps the file's character set: HDF5 converts no character sets.
  Handle mem = check(H5Tcopy(H5T_C_S1), H5Tclose, what + ": string type");
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
  std::vector<std::string> out;
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    std::vector<char*> ptrs(n, nullptr);
    if (n) check(H5Aread(attr.get(), mem.get(), ptrs.data()), what + ": cannot read attribute " + name);
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    if (n) H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
  } else {
    const size_t size = H5Tget_size(type.get());
    H5Tset_size(mem.get(), size);
    std::vector<char> buf(n * size);
    if (n) check(H5Aread(attr.get(), mem.get(), buf.data()), what + ": cannot read attribute " + name);
    for (size_t i = 0; i < n; ++i) out.emplace_back(buf.data() + i * size, strnlen(buf.data() + i * size, size));
  }
  return out;
}

std::string read_string_attr(hid_t obj, const char* name, const std::string& what) {
  std::vector<std::string> values = read_strings_attr(obj, name, what);
  if (values.size() != 1)
    throw IoError(what + ": attribute '" + name + "': expected one string, found " + std::to_string(values.size()));
  return std::move(values[0]);
}

void write_float_array(hid_t file, const std::string& path, const Shape& shape, const float* data,
                       const std::string& what) {
  std::vector<hsize_t> dims;
  for (int i = 0; i < shape.rank; ++i) dims.push_back(static_cast<hsize_t>(shape[i]));
  if (dims.empty()) dims.push_back(0);
  const std::string where = what + ": " + path;
  Handle space = check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, where);
  Handle lcpl = check(H5Pcreate(H5P_LINK_CREATE), H5Pclose, where + ": link properties");
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), where + ": link properties");
  Handle dcpl = check(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, where + ": dataset properties");
  const bool empty = std::find(dims.begin(), dims.end(), hsize_t{0}) != dims.end();
  if (!empty) {
    constexpr hsize_t kMaxChunk = hsize_t{1} << 26;
    std::vector<hsize_t> chunk = dims;
    hsize_t row = 1;
    for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kMaxChunk / row));
    check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), where + ": chunking");
    check(H5Pset_fletcher32(dcpl.get()), where + ": checksum filter");
  }
  Handle ds = check(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                    H5Dclose, where + ": cannot create");
  if (!empty)
    check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), where + ": write failed");
  if (!ds.close()) fail(where + ": write failed");
}

Shape read_float_array(hid_t file, const std::string& path, std::vector<float>& values, const std::string& what) {
  const std::string where = what + ": " + path;
  Handle ds = check(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, what + ": cannot open " + path);
  Handle type = check(H5Dget_type(ds.get()), H5Tclose, where);
  if (H5Tget_class(type.get()) != H5T_FLOAT)
    throw IoError(where + ": expected float32 data, found " + type_name(type.get()));
  Handle space = check(H5Dget_space(ds.get()), H5Sclose, where);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 1 || rank > Shape::max_rank) throw IoError(where + ": unsupported rank " + std::to_string(rank));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  const int64_t count = element_count(dims, where);
  const auto bytes = mul_sizes(count, int64_t{sizeof(float)});
  if (!bytes) throw IoError(where + ": dimensions " + dims_text(dims) + " overflow");
  check_stored(ds.get(), *bytes, where);
  check_memory(*bytes, where);
  Shape shape;
  shape.rank = rank;
  for (int i = 0; i < rank; ++i) shape[i] = static_cast<int64_t>(dims[static_cast<size_t>(i)]);
  values.resize(static_cast<size_t>(count));
  if (!values.empty() && H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
    fail(where + ": read failed (checksum mismatch or truncated file)");
  return shape;
}

std::vector<std::string> list_datasets(hid_t file, const std::string& group) {
  std::vector<std::string> names;
  if (!exists(file, group)) return names;
  Handle g(H5Gopen2(file, group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) return names;
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  H5Ovisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit, &names);
  return names;
}

}  // namespace stride::h5
