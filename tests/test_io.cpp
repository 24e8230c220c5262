// Dataset readers (CIFAR binary, IDX plain/gz), format detection and the HDF5 dataset layout. Real data from
// STRIDE_SHARED_DATA when present; everything else is synthetic, written into a temp directory.
#include <doctest/doctest.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#if __has_include(<hdf5.h>)
#include <hdf5.h>
#define STRIDE_TEST_HDF5 1
#elif __has_include(<hdf5/serial/hdf5.h>)
// The HDF5 include directory is private to stride_core; Debian's serial header still resolves its own
// includes relative to itself.
#include <hdf5/serial/hdf5.h>
#define STRIDE_TEST_HDF5 1
#endif

#include "framework/core/errors.hpp"
#include "tests/data_rule.hpp"
#include "tests/expect_error.hpp"
#include "tests/idx_bytes.hpp"
#include "tests/temp_dir.hpp"
#include "framework/core/parallel.hpp"
#include "io/cifar10.hpp"
#include "io/dataset.hpp"
#include "io/detect.hpp"
#include "io/hdf5_dataset.hpp"
#include "io/idx.hpp"

using namespace stride;
using stride::test::contains;
using stride::test::idx_header;
using stride::test::idx_labels;
using stride::test::put_be32;
using stride::test::io_error;
using stride::test::write_bytes;
namespace fs = std::filesystem;

namespace {

struct TempDir : stride::test::TempDir {
  TempDir() : stride::test::TempDir("io-test") {}
};

// A fresh directory under the system temp dir, removed with everything in it at scope exit.


void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// IDX bytes: images (n, h, w) with pixel (i, y, x) = (i * 7 + y * 3 + x) % 256; labels i % 10 (idx_labels).
std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 0x803) {
  std::vector<uint8_t> v = idx_header(magic, {n, h, w});
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t y = 0; y < h; ++y)
      for (uint32_t x = 0; x < w; ++x) v.push_back(static_cast<uint8_t>((i * 7 + y * 3 + x) % 256));
  return v;
}

// CIFAR-10 records: label (i + seed) % 10, pixel j of record i = (i * 31 + j + seed) % 256.
std::vector<uint8_t> cifar_records(int n, int seed, int label_bytes = 1) {
  std::vector<uint8_t> v;
  for (int i = 0; i < n; ++i) {
    if (label_bytes == 2) v.push_back(static_cast<uint8_t>((i + seed) % 20));  // coarse
    v.push_back(static_cast<uint8_t>((i + seed) % 10));
    for (int j = 0; j < 3072; ++j) v.push_back(static_cast<uint8_t>((i * 31 + j + seed) % 256));
  }
  return v;
}



std::vector<uint8_t> all_images(const SampleSource& s) {
  std::vector<uint8_t> v(static_cast<size_t>(s.info().count * s.info().image_bytes()));
  s.read_images(0, s.info().count, v.data());
  return v;
}

InMemoryDataset synthetic(int64_t n, int64_t c, int64_t h, int64_t w, int seed,
                          std::vector<std::string> names = {"a", "b", "c"}) {
  DatasetInfo info{n, c, h, w, names, "synthetic-" + std::to_string(seed)};
  std::vector<uint8_t> images(static_cast<size_t>(n * c * h * w)), labels(static_cast<size_t>(n));
  uint32_t s = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (auto& b : images) b = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>((i * 7 + seed) % names.size());
  return InMemoryDataset(info, images, labels);
}

const fs::path kShared = STRIDE_SHARED_DATA;

}  // namespace

TEST_CASE("CIFAR-10 sample: record counts from file size, labels and pixels of the real files") {
  const fs::path dir = kShared / "cifar10-sample";
  if (!stride::test::have_data(dir)) return;
  DatasetSplits s = load_cifar10_dir(dir.string());
  const DatasetInfo& tr = s.train->info();
  CHECK(tr.count == 5 * 1017);
  CHECK(s.test->info().count == 1017);
  CHECK(tr.channels == 3);
  CHECK(tr.height == 32);
  CHECK(tr.width == 32);
  CHECK(tr.class_names == cifar10_class_names());  // from batches.meta.txt
  // Values read with numpy.fromfile(data_batch_1.bin, uint8).reshape(-1, 3073).
  const std::vector<uint8_t> first_labels{6, 9, 9, 4, 1, 1, 2, 7, 8, 3};
  CHECK(std::vector<uint8_t>(s.train->labels().begin(), s.train->labels().begin() + 10) == first_labels);
  std::vector<uint8_t> img(3072);
  s.train->read_images(0, 1, img.data());
  CHECK(std::vector<uint8_t>(img.begin(), img.begin() + 5) == std::vector<uint8_t>{59, 43, 50, 68, 98});
  CHECK(img[1023] == 123);                            // R(31, 31)
  CHECK(img[1024] == 62);                             // G(0, 0)
  CHECK(img[2048] == 63);                             // B(0, 0)
  CHECK(img[3071] == 72);                             // B(31, 31)
  s.train->read_images(5 * 1017 - 1, 1, img.data());  // last record of data_batch_5
  CHECK(s.train->labels().back() == 3);
  CHECK(img[0] == 172);
  CHECK(img[1] == 153);
  CHECK(img[3071] == 117);
  CHECK(s.test->labels()[0] == 3);
  CHECK(s.test->labels()[1] == 8);
  std::vector<int64_t> per_class(10, 0), expected{517, 524, 490, 493, 537, 475, 503, 516, 529, 501};
  for (uint8_t l : s.train->labels()) ++per_class[l];
  CHECK(per_class == expected);
  uint64_t sum = 0;
  for (uint8_t b : all_images(*s.train)) sum += b;
  CHECK(sum == 1894073709u);  // numpy: data[:, 1:].sum() over the 5 training files
}

TEST_CASE("CIFAR-10 reader: any record count, meta names, truncated file, bad label, missing batch") {
  TempDir tmp;
  for (int b = 1; b <= 5; ++b) write_bytes(tmp / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records(3, b));
  write_bytes(tmp / "test_batch.bin", cifar_records(2, 9));
  {
    DatasetSplits s = load_cifar10_dir(tmp.path.string());  // no batches.meta.txt: standard names
    CHECK(s.train->info().count == 15);
    CHECK(s.test->info().count == 2);
    CHECK(s.train->info().class_names[9] == "truck");
    CHECK(s.train->labels()[3] == (0 + 2) % 10);  // record 0 of data_batch_2
    std::vector<uint8_t> img(3072);
    s.train->read_images(4, 1, img.data());  // record 1 of batch 2: pixel j = (31 + j + 2) % 256
    for (int j = 0; j < 3072; j += 97) CHECK(img[static_cast<size_t>(j)] == (31 + j + 2) % 256);
    CHECK_THROWS_AS(s.train->read_images(14, 2, img.data()), IoError);
  }
  std::ofstream(tmp / "batches.meta.txt") << "c0\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\n\n";
  CHECK(load_cifar10_dir(tmp.path.string()).test->info().class_names[4] == "c4");

  auto truncated = cifar_records(2, 0);
  truncated.resize(truncated.size() + 5);
  write_bytes(tmp / "data_batch_2.bin", truncated);
  std::string msg = io_error([&] { load_cifar10_dir(tmp.path.string()); });
  CHECK(contains(msg, "data_batch_2.bin"));
  CHECK(contains(msg, "6151"));  // the size
  CHECK(contains(msg, "3073"));

  auto bad = cifar_records(3, 0);
  bad[3073] = 11;  // record 1's label
  write_bytes(tmp / "data_batch_2.bin", bad);
  msg = io_error([&] { load_cifar10_dir(tmp.path.string()); });
  CHECK(contains(msg, "data_batch_2.bin"));
  CHECK(contains(msg, "record 1"));
  CHECK(contains(msg, "byte offset 3073"));
  CHECK(contains(msg, "label 11"));

  write_bytes(tmp / "data_batch_2.bin", cifar_records(3, 2));
  fs::remove(tmp / "data_batch_3.bin");
  msg = io_error([&] { load_cifar10_dir(tmp.path.string()); });
  CHECK(contains(msg, "data_batch_3.bin"));
  CHECK(contains(msg, "missing"));
}

TEST_CASE("InMemoryDataset validates its sizes and labels against the class names") {
  DatasetInfo info{2, 1, 2, 2, {"a", "b"}, "hand-made"};
  CHECK(InMemoryDataset(info, std::vector<uint8_t>(8, 1), {0, 1}).info().count == 2);
  std::string msg = io_error([&] { InMemoryDataset(info, std::vector<uint8_t>(7, 1), {0, 1}); });
  CHECK(contains(msg, "hand-made"));
  CHECK(contains(msg, "expected 8 image bytes"));
  msg = io_error([&] { InMemoryDataset(info, std::vector<uint8_t>(8, 1), {0, 2}); });
  CHECK(contains(msg, "label of sample 1 is 2"));
  info.class_names.clear();  // names derived from the largest label
  CHECK(InMemoryDataset(info, std::vector<uint8_t>(8, 1), {0, 4}).info().class_names.size() == 5);
}

TEST_CASE("CIFAR-100 reader keeps the fine label of the 2-byte header") {
  TempDir tmp;
  write_bytes(tmp / "train.bin", cifar_records(4, 3, 2));
  write_bytes(tmp / "test.bin", cifar_records(1, 0, 2));
  CHECK(detect_dataset_format(tmp.path.string()) == DatasetFormat::cifar100);
  DatasetSplits s = open_dataset(tmp.path.string());
  CHECK(s.train->info().count == 4);
  CHECK(s.train->info().class_names.size() == 100);
  CHECK(s.train->labels() == std::vector<uint8_t>{3, 4, 5, 6});
  std::vector<uint8_t> img(3072);
  s.train->read_images(2, 1, img.data());
  CHECK(img[0] == (2 * 31 + 3) % 256);
  write_bytes(tmp / "odd.bin", cifar_records(2, 0, 1));  // 2 * 3073 bytes: not a multiple of 3074
  std::string msg = io_error([&] { read_cifar_files({tmp / "odd.bin"}, CifarKind::cifar100); });
  CHECK(contains(msg, "odd.bin"));
  CHECK(contains(msg, "3074"));
}

TEST_CASE("MNIST sample (IDX gz): header, counts, labels and pixels of the real files") {
  const fs::path dir = kShared / "mnist-digits-sample";
  if (!stride::test::have_data(dir)) return;
  CHECK(detect_dataset_format(dir.string()) == DatasetFormat::idx);
  DatasetSplits s = open_dataset(dir.string());
  CHECK(s.train->info().count == 8000);
  CHECK(s.test->info().count == 2000);
  CHECK(s.train->info().channels == 1);
  CHECK(s.train->info().height == 28);
  CHECK(s.train->info().width == 28);
  CHECK(s.train->info().class_names == digit_class_names());
  // Values read with gzip + numpy.frombuffer.
  const std::vector<uint8_t> first{9, 3, 1, 3, 5, 3, 0, 1, 6, 9};
  CHECK(std::vector<uint8_t>(s.train->labels().begin(), s.train->labels().begin() + 10) == first);
  std::vector<uint8_t> img(784);
  s.train->read_images(0, 1, img.data());
  const std::vector<uint8_t> row14{0,   0,   0,  0,   0,   0,   37, 252, 252, 221, 41, 84, 191, 252,
                                   252, 252, 62, 217, 252, 168, 0,  0,   0,   0,   0,  0,  0,   0};
  CHECK(std::vector<uint8_t>(img.begin() + 14 * 28, img.begin() + 15 * 28) == row14);
  int64_t sum = 0;
  for (uint8_t b : img) sum += b;
  CHECK(sum == 24978);
  s.test->read_images(1999, 1, img.data());
  sum = 0;
  for (uint8_t b : img) sum += b;
  CHECK(sum == 24195);
  std::vector<int64_t> per_class(10, 0), expected{801, 902, 793, 826, 784, 690, 811, 856, 755, 782};
  for (uint8_t l : s.train->labels()) ++per_class[l];
  CHECK(per_class == expected);
}

TEST_CASE("Fashion-MNIST (Debian's dataset-fashion-mnist): headers, counts and class names") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!stride::test::have_data(dir)) return;
  DatasetSplits s = open_dataset(dir, fashion_mnist_class_names());
  CHECK(s.train->info().count == 60000);
  CHECK(s.test->info().count == 10000);
  CHECK(s.test->info().height == 28);
  CHECK(s.test->info().class_names[9] == "Ankle boot");
  CHECK(s.test->info().class_names[0] == "T-shirt/top");
  CHECK(std::vector<uint8_t>(s.test->labels().begin(), s.test->labels().begin() + 5) ==
        std::vector<uint8_t>{9, 2, 1, 1, 6});
}

TEST_CASE("IDX plain and gzip read the same bytes and gzip is found by magic bytes, not by name") {
  TempDir tmp;
  const auto images = idx_images(5, 4, 3), labels = idx_labels(5);
  write_bytes(tmp / "plain-images", images);
  write_gz(tmp / "gz-images-without-suffix", images);
  IdxArray a = read_idx(tmp / "plain-images", 3);
  IdxArray b = read_idx(tmp / "gz-images-without-suffix", 3);
  CHECK(a.dims == std::vector<int64_t>{5, 4, 3});
  CHECK(b.dims == a.dims);
  CHECK(b.data == a.data);
  CHECK(a.data == std::vector<uint8_t>(images.begin() + 16, images.end()));

  // A directory mixing plain and gz files.
  write_bytes(tmp / "train-images-idx3-ubyte", images);
  write_gz(tmp / "train-labels-idx1-ubyte.gz", labels);
  write_gz(tmp / "t10k-images-idx3-ubyte.gz", idx_images(2, 4, 3));
  write_bytes(tmp / "t10k-labels-idx1-ubyte", idx_labels(2));
  DatasetSplits s = load_idx_dir(tmp.path.string());
  CHECK(s.train->info().count == 5);
  CHECK(s.train->labels() == std::vector<uint8_t>{0, 1, 2, 3, 4});
  CHECK(s.test->info().height == 4);
  CHECK(s.test->info().width == 3);
  std::vector<uint8_t> img(12);
  s.test->read_images(1, 1, img.data());
  CHECK(img[0] == 7);
  CHECK(img[11] == (7 + 3 * 3 + 2) % 256);
}

TEST_CASE("IDX errors name the file and the offset or field: magic, truncation, trailing bytes, counts, labels") {
  TempDir tmp;
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    auto write = [&](const std::string& name, const std::vector<uint8_t>& v) {
      const std::string p = tmp / (name + (gz ? ".gz" : ""));
      gz ? write_gz(p, v) : write_bytes(p, v);
      return p;
    };
    std::string p = write("magic", idx_images(2, 2, 2, 0x804));
    std::string msg = io_error([&] { read_idx(p, 3); });
    CHECK(contains(msg, p));
    CHECK(contains(msg, "magic"));
    CHECK(contains(msg, "offset 0"));
    CHECK(contains(msg, "0x00000803"));
    CHECK(contains(msg, "0x00000804"));
    // A label file where an image file is expected is a magic error too.
    CHECK(contains(io_error([&] { read_idx(write("labels-as-images", idx_labels(3)), 3); }), "0x00000801"));

    auto cut = idx_images(3, 4, 4);
    cut.resize(cut.size() - 5);  // 16 + 48 bytes expected, 59 present
    p = write("truncated", cut);
    msg = io_error([&] { read_idx(p, 3); });
    CHECK(contains(msg, p));
    CHECK(contains(msg, "truncated"));
    CHECK(contains(msg, "offset 59"));
    CHECK(contains(msg, "expected 64"));
    CHECK(contains(msg, "found 59"));

    auto header_only = idx_images(3, 4, 4);
    header_only.resize(10);
    msg = io_error([&] { read_idx(write("short-header", header_only), 3); });
    CHECK(contains(msg, "header"));
    CHECK(contains(msg, "found 10"));

    auto extra = idx_labels(4);
    extra.push_back(0);
    msg = io_error([&] { read_idx(write("extra", extra), 1); });
    CHECK(contains(msg, "after offset 12"));

    const std::string imgs = write("imgs", idx_images(4, 2, 2)), labs = write("labs", idx_labels(3));
    msg = io_error([&] { read_idx_split(imgs, labs); });
    CHECK(contains(msg, imgs));
    CHECK(contains(msg, labs));
    CHECK(contains(msg, "4 images"));
    CHECK(contains(msg, "3 labels"));

    auto bad_label = idx_labels(4);
    bad_label[8 + 2] = 10;
    const std::string bl = write("bad-label", bad_label);
    msg = io_error([&] { read_idx_split(imgs, bl); });
    CHECK(contains(msg, bl));
    CHECK(contains(msg, "sample 2"));
    CHECK(contains(msg, "is 10"));
  }
  // A gzip stream cut in the middle: zlib's error is reported with the file name.
  write_gz(tmp / "whole.gz", idx_images(50, 28, 28));
  auto gz = read_bytes(tmp / "whole.gz");
  gz.resize(gz.size() / 2);
  write_bytes(tmp / "cut.gz", gz);
  std::string msg = io_error([&] { read_idx(tmp / "cut.gz", 3); });
  CHECK(contains(msg, tmp / "cut.gz"));
  CHECK(contains(msg, "gzip"));
  CHECK(contains(msg, "truncated data at offset"));
  CHECK(contains(msg, "expected 39216 bytes"));  // 16 + 50 * 28 * 28

  msg = io_error([&] { load_idx_dir(tmp.path.string()); });
  CHECK(contains(msg, "train-images-idx3-ubyte"));
  CHECK(contains(msg, "missing"));
}

TEST_CASE("open_dataset detects CIFAR, IDX and HDF5 by name and lists what it looked for otherwise") {
  TempDir tmp;
  std::string msg = io_error([&] { open_dataset(tmp.path.string()); });
  CHECK(contains(msg, tmp.path.string()));
  CHECK(contains(msg, "data_batch_1.bin"));
  CHECK(contains(msg, "train-images-idx3-ubyte"));
  write_bytes(tmp / "data.csv", {1, 2, 3});
  msg = io_error([&] { open_dataset(tmp / "data.csv"); });
  CHECK(contains(msg, ".h5"));
  CHECK(contains(io_error([&] { open_dataset(tmp / "nope.h5"); }), "nope.h5"));
  write_bytes(tmp / "garbage.h5", std::vector<uint8_t>(2000, 7));
  msg = io_error([&] { open_dataset(tmp / "garbage.h5"); });
  CHECK(contains(msg, "garbage.h5"));
  CHECK(contains(msg, "not an HDF5 file: no HDF5 signature"));
  write_bytes(tmp / "data_batch_1.bin", cifar_records(1, 0));
  CHECK(detect_dataset_format(tmp.path.string()) == DatasetFormat::cifar10);
}

TEST_CASE("HDF5 dataset round trip: every byte, labels, attributes, chunked partial reads") {
  TempDir tmp;
  const InMemoryDataset train = synthetic(300, 3, 5, 4, 1), test = synthetic(7, 3, 5, 4, 2);
  const std::string path = tmp / "data.h5";
  Hdf5WriteOptions opt;
  opt.chunk_images = 128;  // 300 images: three chunks, the last partial
  opt.source = "unit test";
  write_hdf5_dataset(path, train, test, opt);
  CHECK(fs::is_regular_file(path));
  for (const auto& e : fs::directory_iterator(tmp.path))
    CHECK_MESSAGE(e.path().filename() == "data.h5", "left behind: " << e.path());

  DatasetSplits s = open_dataset(path);
  for (auto [src, ref] : {std::pair{s.train.get(), &train}, std::pair{s.test.get(), &test}}) {
    const DatasetInfo& info = src->info();
    CHECK(info.count == ref->info().count);
    CHECK(info.channels == 3);
    CHECK(info.height == 5);
    CHECK(info.width == 4);
    CHECK(info.class_names == std::vector<std::string>{"a", "b", "c"});
    CHECK(info.source == "unit test");
    CHECK(src->labels() == ref->labels());
    CHECK(all_images(*src) == ref->images());
  }
  // Partial reads inside and across chunk boundaries (chunk = 128 images).
  const int64_t bytes = 60;
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 1}, {127, 2}, {100, 150}, {299, 1}, {256, 44}}) {
    std::vector<uint8_t> part(static_cast<size_t>(count * bytes));
    s.train->read_images(first, count, part.data());
    CHECK(std::memcmp(part.data(), train.images().data() + first * bytes, part.size()) == 0);
  }
  std::vector<uint8_t> one(60);
  std::string msg = io_error([&] { s.train->read_images(299, 2, one.data()); });
  CHECK(contains(msg, "/train/images"));
  CHECK(contains(msg, "first=299"));

  // Concurrent single-image reads (HDF5 serializes them internally) return what a serial read does.
  std::vector<uint8_t> par(static_cast<size_t>(300 * bytes));
  {
    ThreadLimit limit(4);
    parallel_for(300, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) s.train->read_images(i, 1, par.data() + i * bytes);
    });
  }
  CHECK(par == train.images());

  // An empty split is written and read back as empty (chunk dims may not be 0: the writer clamps them).
  const InMemoryDataset none = synthetic(0, 3, 5, 4, 3);
  write_hdf5_dataset(tmp / "empty-test.h5", train, none);
  DatasetSplits e = open_dataset(tmp / "empty-test.h5");
  CHECK(e.test->info().count == 0);
  CHECK(e.test->labels().empty());
  CHECK(e.test->info().width == 4);
  e.test->read_images(0, 0, one.data());
  CHECK(all_images(*e.train) == train.images());

#ifdef STRIDE_TEST_HDF5
  // The layout itself, as any HDF5 reader (h5py) sees it.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, "/train/images", H5P_DEFAULT);
  hid_t t = H5Dget_type(d);
  CHECK(H5Tequal(t, H5T_STD_U8LE) > 0);
  hid_t plist = H5Dget_create_plist(d);
  hsize_t chunk[4] = {0, 0, 0, 0};
  CHECK(H5Pget_layout(plist) == H5D_CHUNKED);
  CHECK(H5Pget_chunk(plist, 4, chunk) == 4);
  CHECK(chunk[0] == 128);
  CHECK(chunk[3] == 4);
  CHECK(H5Pget_nfilters(plist) == 1);  // deflate
  unsigned flags = 0, level = 0;
  size_t nvalues = 1;
  CHECK(H5Pget_filter2(plist, 0, &flags, &nvalues, &level, 0, nullptr, nullptr) == H5Z_FILTER_DEFLATE);
  CHECK(level == 4);
  H5Pclose(plist);
  H5Tclose(t);
  H5Dclose(d);
  hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
  hid_t a = H5Aopen(root, "version", H5P_DEFAULT);
  int v = 0;
  H5Aread(a, H5T_NATIVE_INT, &v);
  CHECK(v == 1);
  H5Aclose(a);
  a = H5Aopen(root, "format", H5P_DEFAULT);
  hid_t st = H5Aget_type(a);
  CHECK(H5Tis_variable_str(st) > 0);
  char* fmt = nullptr;
  H5Aread(a, st, &fmt);
  CHECK(std::string(fmt) == "stride-dataset");
  H5free_memory(fmt);
  H5Tclose(st);
  H5Aclose(a);
  H5Gclose(root);
  H5Fclose(f);
#endif
}

TEST_CASE("HDF5 write failures leave no file behind and a shape mismatch between splits is refused") {
  TempDir tmp;
  const InMemoryDataset a = synthetic(10, 1, 4, 4, 1), b = synthetic(3, 1, 4, 4, 2);
  std::string msg = io_error([&] { write_hdf5_dataset(tmp / "missing-dir/out.h5", a, b); });
  CHECK(contains(msg, "missing-dir/out.h5"));
  CHECK(!fs::exists(tmp / "missing-dir"));

  // A source that fails in the middle of the write: the temp file must go away, no out.h5 appears.
  struct Failing : SampleSource {
    const InMemoryDataset& inner;
    explicit Failing(const InMemoryDataset& d) : inner(d) {}
    const DatasetInfo& info() const override { return inner.info(); }
    const std::vector<uint8_t>& labels() const override { return inner.labels(); }
    void read_images(int64_t first, int64_t count, uint8_t* out) const override {
      if (first > 0) throw IoError("disk on fire at image " + std::to_string(first));
      inner.read_images(first, count, out);
    }
  } failing(a);
  Hdf5WriteOptions opt;
  opt.chunk_images = 4;
  msg = io_error([&] { write_hdf5_dataset(tmp / "out.h5", failing, b, opt); });
  CHECK(contains(msg, "disk on fire at image 4"));
  CHECK(fs::is_empty(tmp.path));

  // An existing file is replaced only when the new one is complete.
  write_hdf5_dataset(tmp / "out.h5", a, b);
  CHECK_THROWS_AS(write_hdf5_dataset(tmp / "out.h5", failing, b, opt), IoError);
  CHECK(open_dataset(tmp / "out.h5").train->info().count == 10);
  CHECK(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()) == 1);

  const InMemoryDataset other = synthetic(3, 3, 4, 4, 2);
  msg = io_error([&] { write_hdf5_dataset(tmp / "mixed.h5", a, other); });
  CHECK(contains(msg, "(N=10, C=1, H=4, W=4)"));
  CHECK(contains(msg, "(N=3, C=3, H=4, W=4)"));
}

#ifdef STRIDE_TEST_HDF5
namespace {
// Writes one dataset of the given HDF5 type and dims (zero-filled) into an open file, creating groups.
void put_dataset(hid_t file, const std::string& name, hid_t type, std::vector<hsize_t> dims) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t d = H5Dcreate2(file, name.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(d >= 0);
  size_t n = 1;
  for (hsize_t x : dims) n *= x;
  std::vector<int64_t> zeros(n, 0);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data());
  H5Dclose(d);
  H5Sclose(space);
  H5Pclose(lcpl);
}
}  // namespace

TEST_CASE("HDF5 malformed layouts give an IoError naming the file and the dataset path") {
  TempDir tmp;
  struct Case {
    const char* name;
    std::vector<std::pair<std::string, std::vector<hsize_t>>> datasets;  // uint8 unless name ends in "!f"
    const char* split;
    std::vector<const char*> expect;
  };
  auto make = [&](const std::string& file, auto&& fill) {
    hid_t f = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(f >= 0);
    fill(f);
    H5Fclose(f);
    return file;
  };
  // Float images (a user who saved normalized data).
  std::string p = make(tmp / "float.h5", [](hid_t f) {
    put_dataset(f, "/train/images", H5T_IEEE_F32LE, {4, 1, 2, 2});
    put_dataset(f, "/train/labels", H5T_STD_U8LE, {4});
  });
  std::string msg = io_error([&] { Hdf5Source(p, "train"); });
  CHECK(contains(msg, p + ":/train/images"));
  CHECK(contains(msg, "expected uint8"));
  CHECK(contains(msg, "float32"));
  // Missing /test (the whole group) and missing /test/labels.
  msg = io_error([&] { open_hdf5_dataset(p); });
  CHECK(contains(msg, "float.h5"));
  p = make(tmp / "no-test.h5", [](hid_t f) {
    put_dataset(f, "/train/images", H5T_STD_U8LE, {4, 1, 2, 2});
    put_dataset(f, "/train/labels", H5T_STD_U8LE, {4});
    put_dataset(f, "/test/images", H5T_STD_U8LE, {4, 1, 2, 2});
  });
  CHECK(Hdf5Source(p, "train").info().count == 4);
  CHECK(Hdf5Source(p, "train").info().class_names == std::vector<std::string>{"0"});  // no class_names attribute
  msg = io_error([&] { open_hdf5_dataset(p); });
  CHECK(contains(msg, p));
  CHECK(contains(msg, "missing dataset /test/labels"));
  msg = io_error([&] { Hdf5Source(p, "valid"); });
  CHECK(contains(msg, "missing group /valid"));
  // Wrong rank, count mismatch, non-integer labels, label out of range for the class names.
  p = make(tmp / "rank.h5", [](hid_t f) {
    put_dataset(f, "/train/images", H5T_STD_U8LE, {4, 4});
    put_dataset(f, "/train/labels", H5T_STD_U8LE, {4});
  });
  msg = io_error([&] { Hdf5Source(p, "train"); });
  CHECK(contains(msg, "rank.h5:/train/images"));
  CHECK(contains(msg, "found rank 2"));
  p = make(tmp / "count.h5", [](hid_t f) {
    put_dataset(f, "/train/images", H5T_STD_U8LE, {4, 2, 2});  // rank 3 is accepted as C = 1
    put_dataset(f, "/train/labels", H5T_STD_I64LE, {5});
  });
  msg = io_error([&] { Hdf5Source(p, "train"); });
  CHECK(contains(msg, "count.h5:/train/labels"));
  CHECK(contains(msg, "5 labels"));
  CHECK(contains(msg, "4 images"));
  p = make(tmp / "flabels.h5", [](hid_t f) {
    put_dataset(f, "/train/images", H5T_STD_U8LE, {4, 2, 2});
    put_dataset(f, "/train/labels", H5T_IEEE_F64LE, {4});
  });
  msg = io_error([&] { Hdf5Source(p, "train"); });
  CHECK(contains(msg, "flabels.h5:/train/labels"));
  CHECK(contains(msg, "float64"));

  // A file of ours with a label the class names do not cover.
  const InMemoryDataset good = synthetic(6, 1, 2, 2, 1, {"x", "y", "z"});
  write_hdf5_dataset(tmp / "ours.h5", good, good);
  {
    hid_t f = H5Fopen((tmp / "ours.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/test/labels", H5P_DEFAULT);
    const uint8_t labels[6] = {0, 1, 2, 3, 0, 1};
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    H5Dclose(d);
    H5Fclose(f);
  }
  CHECK(Hdf5Source(tmp / "ours.h5", "train").labels() == good.labels());
  msg = io_error([&] { Hdf5Source(tmp / "ours.h5", "test"); });
  CHECK(contains(msg, "ours.h5:/test/labels"));
  CHECK(contains(msg, "sample 3 is 3"));
}
#endif

namespace {
void check_conversion(const char* name, int deflate_level) {
  const fs::path dir = kShared / name;
  if (!stride::test::have_data(dir)) return;
  TempDir tmp;
  Hdf5WriteOptions opt;
  opt.deflate_level = deflate_level;
  convert_dataset(dir.string(), tmp / "out.h5", {}, opt);
  DatasetSplits src = open_dataset(dir.string()), h5 = open_dataset(tmp / "out.h5");
  CHECK(dynamic_cast<Hdf5Source*>(h5.train.get()) != nullptr);
  CHECK(h5.train->info().source == dir.string());
  CHECK(h5.train->info().class_names == src.train->info().class_names);
  CHECK(h5.train->info().shape_str() == src.train->info().shape_str());
  CHECK(h5.test->info().shape_str() == src.test->info().shape_str());
  CHECK(h5.train->labels() == src.train->labels());
  CHECK(h5.test->labels() == src.test->labels());
  CHECK(all_images(*h5.train) == all_images(*src.train));
  CHECK(all_images(*h5.test) == all_images(*src.test));
}
}  // namespace

// Level 1 keeps the CIFAR case fast; the default level is exercised by the MNIST case and the round trip.
TEST_CASE("convert_dataset: CIFAR-10 sample to HDF5 and back, byte for byte") { check_conversion("cifar10-sample", 1); }

TEST_CASE("convert_dataset: MNIST sample (IDX gz) to HDF5 and back, byte for byte") {
  check_conversion("mnist-digits-sample", 4);
}
