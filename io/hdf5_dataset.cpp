#include "io/hdf5_dataset.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/detect.hpp"
#include "io/hdf5.hpp"
#include "io/hdf5_structure.hpp"

namespace stride {
namespace {

constexpr const char* kFormat = "stride-dataset";
constexpr int64_t kVersion = 1;

using h5::Handle;

void write_split(hid_t file, const std::string& split, const SampleSource& src, const Hdf5WriteOptions& o,
                 const std::string& what) {
  const DatasetInfo& in = src.info();
  Handle group = h5::check(H5Gcreate2(file, split.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                           what + ": cannot create group /" + split);
  const auto N = static_cast<hsize_t>(in.count);
  const auto chunk_n = static_cast<hsize_t>(std::clamp<int64_t>(std::min(o.chunk_images, in.count), 1, 1 << 20));
  const bool compress = o.deflate_level > 0;

  // Images: unlimited along N so a chunk may be larger than a small split (and a file could be appended to).
  const hsize_t dims[4] = {N, hsize_t(in.channels), hsize_t(in.height), hsize_t(in.width)};
  const hsize_t maxdims[4] = {H5S_UNLIMITED, dims[1], dims[2], dims[3]};
  const hsize_t chunk[4] = {chunk_n, dims[1], dims[2], dims[3]};
  Handle space(H5Screate_simple(4, dims, maxdims), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), 4, chunk);
  // No shuffle filter: it regroups the bytes of multi-byte elements and is a no-op that only costs time
  // on uint8 data.
  if (compress) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(std::min(o.deflate_level, 9)));
  const std::string images_name = "/" + split + "/images";
  Handle images =
      h5::check(H5Dcreate2(group.get(), "images", H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                H5Dclose, what + ": cannot create dataset " + images_name);
  const int64_t bytes = in.image_bytes();
  std::vector<uint8_t> buf(static_cast<size_t>(int64_t(chunk_n) * bytes));
  for (int64_t b = 0; b < in.count; b += int64_t(chunk_n)) {
    const int64_t n = std::min<int64_t>(int64_t(chunk_n), in.count - b);
    src.read_images(b, n, buf.data());
    const hsize_t start[4] = {hsize_t(b), 0, 0, 0};
    const hsize_t count[4] = {hsize_t(n), dims[1], dims[2], dims[3]};
    Handle fspace(H5Dget_space(images.get()), H5Sclose);
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    Handle mspace(H5Screate_simple(4, count, nullptr), H5Sclose);
    h5::check(H5Dwrite(images.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, buf.data()),
                 what + ": cannot write " + images_name);
  }

  const hsize_t lmax = H5S_UNLIMITED, lchunk = std::clamp<hsize_t>(N, 1, 1 << 16);
  Handle lspace(H5Screate_simple(1, &N, &lmax), H5Sclose);
  Handle lcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(lcpl.get(), 1, &lchunk);
  if (compress) H5Pset_deflate(lcpl.get(), static_cast<unsigned>(std::min(o.deflate_level, 9)));
  const std::string labels_name = "/" + split + "/labels";
  Handle labels =
      h5::check(H5Dcreate2(group.get(), "labels", H5T_STD_U8LE, lspace.get(), H5P_DEFAULT, lcpl.get(), H5P_DEFAULT),
                H5Dclose, what + ": cannot create dataset " + labels_name);
  if (in.count != static_cast<int64_t>(src.labels().size()))
    throw IoError(what + ": split " + split + " has " + std::to_string(in.count) + " images but " +
                  std::to_string(src.labels().size()) + " labels");
  if (N > 0)
    h5::check(H5Dwrite(labels.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, src.labels().data()),
                 what + ": cannot write " + labels_name);
}

}  // namespace

void write_hdf5_dataset(const std::string& path, const SampleSource& train, const SampleSource& test,
                        const Hdf5WriteOptions& options) {
  const DatasetInfo& tr = train.info();
  const DatasetInfo& te = test.info();
  if (tr.channels != te.channels || tr.height != te.height || tr.width != te.width)
    throw IoError(path + ": train images " + tr.shape_str() + " and test images " + te.shape_str() +
                  " differ in C, H or W");
  const auto k = static_cast<int64_t>(tr.class_names.size());
  if (k == 0 || k > 256)
    throw IoError(path + ": expected 1 to 256 class names for " + tr.source + ", got " + std::to_string(k));
  check_label_range(train.labels(), k, tr.source);
  check_label_range(test.labels(), k, te.source);

  // A unique temp name in the target directory, so the final rename is atomic on the same file system.
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0)
    throw IoError(path + ": cannot create a temporary file in " +
                  std::filesystem::absolute(path).parent_path().string() + ": " + std::strerror(errno));
  fchmod(fd, 0644);  // mkstemp's 0600 would make the dataset unreadable to other users
  close(fd);
  try {
    h5::QuietErrors quiet;
    {
      Handle file = h5::check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                              path + ": cannot create HDF5 file " + tmp);
      write_split(file.get(), "train", train, options, path);
      write_split(file.get(), "test", test, options, path);
      Handle root(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
      h5::write_strings_attr(root.get(), "class_names", tr.class_names, path);
      h5::write_string_attr(root.get(), "source", options.source.empty() ? tr.source : options.source, path);
      h5::write_string_attr(root.get(), "format", kFormat, path);
      h5::write_scalar_attr<int32_t>(root.get(), "version", static_cast<int32_t>(kVersion), path, H5T_STD_I32LE);
      h5::check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), path + ": cannot flush " + tmp);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw IoError(path + ": cannot rename " + tmp + " into place: " + std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

struct Hdf5Source::Handles {
  Handle file, images;
};

Hdf5Source::~Hdf5Source() = default;

Hdf5Source::Hdf5Source(const std::string& path, const std::string& split)
    : Hdf5Source(path, split, (check_file(path), StructureChecked{})) {}

void Hdf5Source::check_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw IoError(path + ": no such HDF5 file");
  h5::check_structure(path);  // every chunk of every dataset, before libhdf5 reads a byte of the file
}

Hdf5Source::Hdf5Source(const std::string& path, const std::string& split, StructureChecked)
    : h_(std::make_unique<Handles>()) {
  h5::QuietErrors quiet;
  h_->file =
      h5::check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path + ": not a readable HDF5 file");
  const hid_t file = h_->file.get();

  Handle root(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose);
  if (h5::has_attr(root.get(), "format")) {
    auto f = h5::read_strings_attr(root.get(), "format", path);
    if (f.size() != 1 || f[0] != kFormat)
      throw IoError(path + ": attribute format is '" + (f.empty() ? "" : f[0]) + "', expected '" + kFormat + "'");
  }
  if (h5::has_attr(root.get(), "version")) {
    const auto v = h5::read_scalar_attr<int64_t>(root.get(), "version", path);
    if (v < 1 || v > kVersion)
      throw IoError(path + ": attribute version is " + std::to_string(v) + ", this build reads version " +
                    std::to_string(kVersion));
  }

  const std::string group = "/" + split;
  if (!h5::exists(file, group)) throw IoError(path + ": missing group " + group);
  images_path_ = path + ":" + group + "/images";
  const std::string labels_path = path + ":" + group + "/labels";
  for (const auto& name : {group + "/images", group + "/labels"})
    if (!h5::exists(file, name)) throw IoError(path + ": missing dataset " + name);

  // A chunk cache that holds many chunks, so reading single images in shuffled order does not decompress
  // the same chunk again and again (the default cache is 1 MiB: one CIFAR chunk).
  Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_chunk_cache(dapl.get(), 12421, size_t{64} << 20, 1.0);
  h_->images = h5::check(H5Dopen2(file, (group + "/images").c_str(), dapl.get()), H5Dclose,
                         images_path_ + ": cannot open");
  Handle itype(H5Dget_type(h_->images.get()), H5Tclose);
  if (H5Tget_class(itype.get()) != H5T_INTEGER || H5Tget_size(itype.get()) != 1 ||
      H5Tget_sign(itype.get()) != H5T_SGN_NONE)
    throw IoError(images_path_ + ": expected uint8 elements, found " + h5::type_name(itype.get()));
  Handle ispace(H5Dget_space(h_->images.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(ispace.get());
  if (rank != 4 && rank != 3)
    throw IoError(images_path_ + ": expected rank 4 (N, C, H, W) or 3 (N, H, W), found rank " + std::to_string(rank));
  std::vector<hsize_t> idims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(ispace.get(), idims.data(), nullptr);
  info_.count = static_cast<int64_t>(idims[0]);
  info_.channels = rank == 4 ? static_cast<int64_t>(idims[1]) : 1;
  info_.height = static_cast<int64_t>(idims[rank - 2]);
  info_.width = static_cast<int64_t>(idims[rank - 1]);
  if (info_.channels <= 0 || info_.height <= 0 || info_.width <= 0)
    throw IoError(images_path_ + ": image dimensions " + h5::dims_text(idims) + " must be positive");
  // Every image must be in the file: an unwritten or sparse dataset would read as fill values, and
  // normalization and training would grind through them.
  h5::check_stored(h_->images.get(), h5::element_count(idims, images_path_), images_path_);

  Handle labels = h5::check(H5Dopen2(file, (group + "/labels").c_str(), H5P_DEFAULT), H5Dclose,
                            labels_path + ": cannot open");
  Handle ltype(H5Dget_type(labels.get()), H5Tclose);
  if (H5Tget_class(ltype.get()) != H5T_INTEGER)
    throw IoError(labels_path + ": expected integer labels (uint8), found " + h5::type_name(ltype.get()));
  Handle lspace(H5Dget_space(labels.get()), H5Sclose);
  const int lrank = H5Sget_simple_extent_ndims(lspace.get());
  std::vector<hsize_t> ldims(static_cast<size_t>(std::max(lrank, 0)));
  H5Sget_simple_extent_dims(lspace.get(), ldims.data(), nullptr);
  if (lrank != 1) throw IoError(labels_path + ": expected rank 1 (N,), found shape " + h5::dims_text(ldims));
  if (ldims[0] != idims[0])
    throw IoError(labels_path + ": holds " + std::to_string(ldims[0]) + " labels but " + images_path_ + " holds " +
                  std::to_string(info_.count) + " images");
  const size_t label_size = H5Tget_size(ltype.get());
  if (label_size == 0 || label_size > 8)
    throw IoError(labels_path + ": expected integer labels of 1 to 8 bytes, found " + std::to_string(label_size));
  h5::check_stored(labels.get(), info_.count * static_cast<int64_t>(label_size), labels_path);
  check_memory(info_.count, labels_path + ": " + std::to_string(info_.count) + " labels");

  std::vector<std::string> names;
  const bool named = h5::has_attr(root.get(), "class_names");
  if (named) names = h5::read_strings_attr(root.get(), "class_names", path);
  const auto k = static_cast<int64_t>(named ? names.size() : 256);
  if (k == 0 || k > 256)
    throw IoError(path + ": attribute class_names holds " + std::to_string(k) + " names, expected 1..256");
  // Read as int64 whatever the stored integer type, so negative or > 255 labels are reported, not clipped;
  // in blocks, so the wide copy never holds more than one block.
  labels_.resize(static_cast<size_t>(info_.count));
  constexpr int64_t kBlock = int64_t{1} << 16;
  std::vector<int64_t> wide(static_cast<size_t>(std::min(kBlock, info_.count)));
  int64_t top = 0;
  for (int64_t first = 0; first < info_.count; first += kBlock) {
    const hsize_t start = static_cast<hsize_t>(first), cnt = static_cast<hsize_t>(std::min(kBlock, info_.count - first));
    Handle fspace(H5Dget_space(labels.get()), H5Sclose);
    h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &cnt, nullptr),
              labels_path + ": cannot select labels");
    Handle mspace(H5Screate_simple(1, &cnt, nullptr), H5Sclose);
    h5::check(H5Dread(labels.get(), H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT, wide.data()),
              labels_path + ": cannot read");
    for (hsize_t j = 0; j < cnt; ++j) {
      const int64_t l = wide[j];
      const int64_t i = first + static_cast<int64_t>(j);
      if (l < 0 || l >= k)
        throw IoError(labels_path + ": label of sample " + std::to_string(i) + " is " + std::to_string(l) +
                      ", expected 0.." + std::to_string(k - 1));
      labels_[static_cast<size_t>(i)] = static_cast<uint8_t>(l);
      top = std::max(top, l);
    }
  }
  info_.class_names = named ? std::move(names) : numbered_class_names(top + 1);
  info_.source = path;
  if (h5::has_attr(root.get(), "source")) {
    auto s = h5::read_strings_attr(root.get(), "source", path);
    if (!s.empty()) info_.source = echo(s[0]);
  }
}

void Hdf5Source::read_images(int64_t first, int64_t count, uint8_t* out) const {
  DatasetInfo where = info_;
  where.source = images_path_;
  check_read_range(where, first, count);
  if (count == 0) return;
  h5::QuietErrors quiet;
  Handle fspace(H5Dget_space(h_->images.get()), H5Sclose);
  hsize_t start[4] = {hsize_t(first), 0, 0, 0}, cnt[4];
  H5Sget_simple_extent_dims(fspace.get(), cnt, nullptr);
  cnt[0] = static_cast<hsize_t>(count);
  h5::check(
      H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr),
      images_path_ + ": cannot select images " + std::to_string(first) + ".." + std::to_string(first + count - 1));
  // The memory space has the same shape as the file selection: HDF5 then copies whole chunk rows instead of
  // iterating a rank-changing selection element by element (measured 25x slower on a CIFAR split).
  Handle mspace(H5Screate_simple(H5Sget_simple_extent_ndims(fspace.get()), cnt, nullptr), H5Sclose);
  h5::check(
      H5Dread(h_->images.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, out),
      images_path_ + ": cannot read images " + std::to_string(first) + ".." + std::to_string(first + count - 1));
}

DatasetSplits open_hdf5_dataset(const std::string& path) {
  // One structure check for both splits.
  Hdf5Source::check_file(path);
  DatasetSplits s;
  s.train = std::make_unique<Hdf5Source>(path, "train", Hdf5Source::StructureChecked{});
  s.test = std::make_unique<Hdf5Source>(path, "test", Hdf5Source::StructureChecked{});
  return s;
}

void convert_dataset(const std::string& src, const std::string& out, const std::vector<std::string>& class_names,
                     const Hdf5WriteOptions& options) {
  DatasetSplits s = open_dataset(src, class_names);
  Hdf5WriteOptions o = options;
  if (o.source.empty()) o.source = src;
  write_hdf5_dataset(out, *s.train, *s.test, o);
}

}  // namespace stride
