// h5::check_structure (io/hdf5_structure.hpp): the in-process walk that stands between crafted HDF5 files and
// libhdf5. Valid files from stride, from libhdf5 with every layout option stride meets, and from h5py (default
// and libver='latest', user block, paged fixed arrays, compact and contiguous data, dimension scales, many
// links) pass, and stride reads their pixels back exactly. Crafted files are refused with the object, the
// structure, the byte offset and the reason: each case below is a class of file that made libhdf5 1.10.8 loop,
// crash or allocate beyond the limits, or one that stride does not read by design. The fuzzers' findings in
// tests/corpus are refused by the walk itself, before libhdf5 would see them.
#include <doctest/doctest.h>
#include <hdf5.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "io/checkpoint.hpp"
#include "io/dataset.hpp"
#include "io/hdf5_dataset.hpp"
#include "io/hdf5_structure.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
namespace fs = std::filesystem;

namespace {

// The refusal's message, or "" when the file passes.
std::string refusal(const std::string& path, const h5::StructureLimits& limits = {}) {
  try {
    h5::check_structure(path, limits);
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                             static_cast<std::streamsize>(bytes.size()));
}

uint64_t get(const std::vector<uint8_t>& b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b.at(at + static_cast<size_t>(i));
  return v;
}

void put(std::vector<uint8_t>& b, size_t at, int n, uint64_t v) {
  for (int i = 0; i < n; ++i) b.at(at + static_cast<size_t>(i)) = static_cast<uint8_t>(v >> (8 * i));
}

size_t find(const std::vector<uint8_t>& b, const std::string& what, size_t from = 0) {
  const auto it = std::search(b.begin() + static_cast<std::ptrdiff_t>(from), b.end(), what.begin(), what.end());
  REQUIRE_MESSAGE(it != b.end(), "no '" << what << "' in the file");
  return static_cast<size_t>(it - b.begin());
}

// "g<i>" (appended rather than prepended: GCC 12 warns falsely on "literal" + std::string).
std::string group_name(int i) { return std::string("g").append(std::to_string(i)); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

StoredArray ramp(const Shape& shape, float start) {
  StoredArray a{shape, std::vector<float>(static_cast<size_t>(shape.numel()))};
  for (size_t i = 0; i < a.values.size(); ++i) a.values[i] = start + 0.25f * static_cast<float>(i);
  return a;
}

Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.stride_version = "0.1.0";
  c.step = 7;
  c.model_spec = R"({"name":"t","layers":[]})";
  c.run_config = R"({"batch":16})";
  c.norm_mean = {0.5f};
  c.norm_std = {0.25f};
  c.class_names = {"cat", "dog", "ship"};
  c.params["conv1/weight"] = ramp(Shape{4, 1, 3, 3}, -1.0f);
  c.params["conv1/bias"] = ramp(Shape{4}, 2.0f);
  c.optimizer_kind = "sgd";
  c.optimizer["conv1/weight/momentum"] = ramp(Shape{4, 1, 3, 3}, 1.0f);
  c.has_progress = true;
  return c;
}

// The superblock (version 0, 8-byte offsets) of a file libhdf5 wrote with its defaults: the root group's
// object header and its cached symbol table.
struct Superblock0 {
  uint64_t root_header, root_btree, root_heap;
  explicit Superblock0(const std::vector<uint8_t>& b) {
    REQUIRE(b.at(8) == 0);
    root_header = get(b, 64, 8);
    root_btree = get(b, 80, 8);
    root_heap = get(b, 88, 8);
  }
};

// A file libhdf5 writes with `configure` applied to a fresh file access list and `fill` given the file.
template <class Fill>
void write_h5(const std::string& path, bool latest, Fill fill) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (latest) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  REQUIRE(file >= 0);
  fill(file);
  H5Fclose(file);
  H5Pclose(fapl);
}

}  // namespace

TEST_CASE("hdf5 structure: what stride writes passes, and so does every h5py layout stride reads") {
  test::TempDir tmp("h5walk");
  write_checkpoint(tmp / "ckpt.h5", sample_checkpoint());
  CHECK(refusal(tmp / "ckpt.h5") == "");

  // The h5py files: a dataset in stride's layout in every storage h5py offers for it, plus objects stride
  // does not read but meets in users' files. Pixels follow a formula, so the reads can be checked exactly.
  const std::string script = tmp / "make.py";
  std::ofstream(script) << R"(
import sys, h5py, numpy as np
out = sys.argv[1]
n, c, h, w = 300, 1, 6, 5
x = ((np.arange(n)[:, None, None, None] * 31 + np.arange(h)[None, None, :, None] * 7
      + np.arange(w)[None, None, None, :] * 3 + np.arange(c)[None, :, None, None]) % 256).astype(np.uint8)
y = (np.arange(n) % 10).astype(np.uint8)
def layout(f, **kw):
    for split in ("train", "test"):
        f.create_dataset(split + "/images", data=x, **kw)
        f.create_dataset(split + "/labels", data=y.astype(np.int64))
    f.attrs.create("class_names", [str(i) for i in range(10)], dtype=h5py.string_dtype())
variants = {
    "default_gzip": ({}, dict(chunks=(64, 1, 6, 5), compression="gzip", compression_opts=4)),
    "default_shuffle_fletcher": ({}, dict(chunks=(7, 1, 3, 5), compression="gzip", shuffle=True, fletcher32=True)),
    "default_contiguous": ({}, {}),
    "latest_fixed_array": (dict(libver="latest"), dict(chunks=(64, 1, 6, 5), compression="gzip")),
    "latest_paged_fixed_array": (dict(libver="latest"), dict(chunks=(1, 1, 3, 5))),
    "latest_paged_filtered": (dict(libver="latest"), dict(chunks=(1, 1, 6, 5), compression="gzip", fletcher32=True)),
    "latest_single_chunk": (dict(libver="latest"), dict(chunks=(300, 1, 6, 5), compression="gzip")),
    "latest_contiguous": (dict(libver="latest"), {}),
    "userblock": (dict(userblock_size=512), dict(chunks=(64, 1, 6, 5), compression="gzip")),
    "userblock_latest": (dict(userblock_size=2048, libver="latest"), dict(chunks=(64, 1, 6, 5))),
}
for name, (file_kw, data_kw) in variants.items():
    with h5py.File(f"{out}/{name}.h5", "w", **file_kw) as f:
        layout(f, **data_kw)
with h5py.File(f"{out}/default_compact.h5", "w") as f:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    for split in ("train", "test"):
        f.create_group(split)
        for name, data in (("images", x), ("labels", y)):
            d = h5py.h5d.create(f[split].id, name.encode(), h5py.h5t.py_create(data.dtype),
                                h5py.h5s.create_simple(data.shape), dcpl=dcpl)
            d.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
with h5py.File(f"{out}/objects.h5", "w") as f:
    layout(f, chunks=(64, 1, 6, 5), compression="gzip")
    for i in range(200):  # a symbol table B-tree of several levels
        g = f.create_group(f"extra/g{i:03d}")
        g.attrs["note"] = "group %d" % i
    f["extra/edges"] = np.arange(1000 * 37, dtype=">f8").reshape(1000, 37)
    f["extra/ints"] = np.arange(10, dtype=">i4")
    f["extra/scale"] = np.arange(1000.0)
    f["extra/scale"].make_scale("s")
    f["extra/edges"].dims[0].attach_scale(f["extra/scale"])
    f["extra/soft"] = h5py.SoftLink("/train")
    f.attrs["scalar"] = 3.5
    f.attrs["half"] = np.float16(1.5)
    f.attrs["compound"] = np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")])
    f.attrs.create("enum", 1, dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="i1"))
    f.attrs.create("ragged", np.array([np.arange(3), np.arange(5)], dtype=object), dtype=h5py.vlen_dtype(np.int32))
    f.attrs["fixed"] = np.bytes_("fixed-length")
)";
  const auto made = test::run_command("/usr/bin/python3 " + script + " " + tmp.path.string());
  REQUIRE_MESSAGE(made.exit_code == 0, "h5py (python3-h5py) is needed: " << made.output);
  for (const char* name : {"default_gzip", "default_shuffle_fletcher", "default_contiguous", "default_compact",
                           "latest_fixed_array", "latest_paged_fixed_array", "latest_paged_filtered",
                           "latest_single_chunk", "latest_contiguous", "userblock", "userblock_latest", "objects"}) {
    CAPTURE(name);
    const std::string path = tmp / (std::string(name) + ".h5");
    REQUIRE(refusal(path) == "");
    const DatasetSplits splits = open_hdf5_dataset(path);
    const SampleSource& train = *splits.train;
    REQUIRE(train.info().count == 300);
    std::vector<uint8_t> images(static_cast<size_t>(300 * train.info().image_bytes()));
    train.read_images(0, 300, images.data());
    bool exact = true;
    for (int64_t i = 0; i < 300; ++i)
      for (int64_t r = 0; r < 6; ++r)
        for (int64_t col = 0; col < 5; ++col)
          exact = exact && images[static_cast<size_t>(i * 30 + r * 5 + col)] == (i * 31 + r * 7 + col * 3) % 256;
    CHECK(exact);
    CHECK(train.labels()[123] == 3);
  }
}

TEST_CASE("hdf5 structure: crafted checkpoints are refused before libhdf5 reads them, naming what is wrong") {
  test::TempDir tmp("h5walk");
  const std::string good = tmp / "ckpt.h5";
  write_checkpoint(good, sample_checkpoint());
  const std::vector<uint8_t> base = bytes_of(good);
  const Superblock0 sb(base);
  auto crafted = [&](const std::string& name, auto patch) {
    std::vector<uint8_t> b = base;
    patch(b);
    const std::string path = tmp / name;
    write_bytes(path, b);
    const std::string msg = refusal(path);
    CAPTURE(name);
    CAPTURE(msg);
    CHECK(contains(msg, path + ": "));
    // read_checkpoint refuses it with the same words (the walk runs first).
    std::string read_error;
    try {
      read_checkpoint(path);
    } catch (const IoError& e) {
      read_error = e.what();
    }
    CHECK(read_error == msg);
    return msg;
  };

  // Truncated: the superblock promises more bytes than the file has.
  std::string msg = crafted("truncated.h5", [](auto& b) { b.resize(b.size() - 100); });
  CHECK(contains(msg, "the file is truncated: the superblock declares"));

  // Global heap: a free-space object of size 0 made libhdf5 loop forever (tests/corpus/*/hang-hdf5-*).
  msg = crafted("heap_loop.h5", [](auto& b) {
    const size_t gcol = find(b, "GCOL");
    size_t p = gcol + 16;
    while (get(b, p, 2) != 0) p += 16 + ((get(b, p + 8, 8) + 7) & ~uint64_t{7});
    put(b, p + 8, 8, 0);
  });
  CHECK(contains(msg, "global heap collection at byte"));
  CHECK(contains(msg, "object 0 of 0 bytes does not fit in the collection"));

  // A variable-length string whose length promises gigabytes (libhdf5 allocated it before looking).
  msg = crafted("vlen_length.h5", [](auto& b) {
    const size_t gcol = find(b, "GCOL");
    // The first string of the "format" attribute points into this collection: its element is the 4-byte
    // length, then the collection's address.
    uint8_t address[8];
    for (int i = 0; i < 8; ++i) address[i] = static_cast<uint8_t>(gcol >> (8 * i));
    const size_t element = find(b, std::string(reinterpret_cast<char*>(address), 8)) - 4;
    put(b, element, 4, 0x7FFFFFFF);
  });
  CHECK(contains(msg, "/: attribute '"));
  CHECK(contains(msg, "claims 2147483647 values of 1 bytes, its heap object holds"));

  // The root group's B-tree node made its own child: libhdf5 would walk it forever.
  msg = crafted("btree_cycle.h5", [&](auto& b) {
    REQUIRE(std::memcmp(&b.at(sb.root_btree), "TREE", 4) == 0);
    b.at(sb.root_btree + 5) = 1;                // level 1: its children are nodes
    put(b, sb.root_btree + 32, 8, sb.root_btree);  // child 0: itself
  });
  CHECK(contains(msg, "group B-tree node at byte " + std::to_string(sb.root_btree)));
  CHECK(contains(msg, "a node reached twice"));

  // The root group's B-tree node typed as a chunk node, and one promising more entries than a node holds (2K =
  // 32 for the default group K of 16): each is refused at its field.
  msg = crafted("btree_node_type.h5", [&](auto& b) { b.at(sb.root_btree + 4) = 1; });
  CHECK(contains(msg, "group B-tree node at byte " + std::to_string(sb.root_btree + 5)));
  CHECK(contains(msg, "a chunk B-tree node where a group node belongs"));
  msg = crafted("btree_entries.h5", [&](auto& b) { put(b, sb.root_btree + 6, 2, 0xFFFF); });
  CHECK(contains(msg, "group B-tree node at byte " + std::to_string(sb.root_btree + 8)));
  CHECK(contains(msg, "65535 entries in a node of 32"));

  // A continuation message pointing back at its own object header's chunk.
  msg = crafted("continuation_cycle.h5", [&](auto& b) {
    const uint64_t header = sb.root_header;
    const uint64_t size0 = get(b, header + 8, 4);
    size_t p = header + 16;
    while (p < header + 16 + size0 && get(b, p, 2) != 0x10) p += 8 + get(b, p + 2, 2);
    REQUIRE_MESSAGE(p < header + 16 + size0, "the root header has no continuation message");
    const uint64_t chunk = get(b, p + 8, 8);
    // The continuation chunk's own continuation, or this one, sent back to chunk 0.
    put(b, p + 8, 8, header + 16);
    put(b, p + 16, 8, size0);
    (void)chunk;
  });
  CHECK(contains(msg, "object header continuation at byte"));
  CHECK(contains(msg, "a continuation chunk reached twice (a cycle)"));

  // A chunk whose index claims more stored bytes than the file holds (libhdf5 allocated them first).
  msg = crafted("chunk_size.h5", [](auto& b) {
    const size_t tree = find(b, std::string("TREE\x01", 5));
    put(b, tree + 24, 4, 0xFFFFFFF0);  // the first key's chunk size
  });
  CHECK(contains(msg, "chunk (0"));
  CHECK(contains(msg, "4294967280 stored bytes run past the end of the file"));

  // The local heap's free list looping back on itself.
  msg = crafted("free_list_cycle.h5", [&](auto& b) {
    const uint64_t heap = sb.root_heap;
    REQUIRE(std::memcmp(&b.at(heap), "HEAP", 4) == 0);
    const uint64_t size = get(b, heap + 8, 8);
    const uint64_t data = get(b, heap + 24, 8);
    const uint64_t block = size - 16;  // the last 16 bytes of the segment become a block pointing to itself
    put(b, heap + 16, 8, block);
    put(b, data + block, 8, block);
    put(b, data + block + 8, 8, 16);
  });
  CHECK(contains(msg, "local heap at byte " + std::to_string(sb.root_heap)));
  CHECK(contains(msg, "twice (a cycle)"));
}

TEST_CASE("hdf5 structure: attributes, chunks, indexes and links stride does not read are refused by name") {
  test::TempDir tmp("h5walk");
  // An attribute whose dataspace promises more elements than its message holds (libhdf5 copied them all).
  write_h5(tmp / "attr.h5", false, [](hid_t f) {
    const hsize_t four = 4;
    const hid_t space = H5Screate_simple(1, &four, nullptr);
    const hid_t a = H5Acreate2(f, "ZZZZ", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    const int32_t v[4] = {1, 2, 3, 4};
    H5Awrite(a, H5T_NATIVE_INT32, v);
    H5Aclose(a);
    H5Sclose(space);
  });
  std::vector<uint8_t> b = bytes_of(tmp / "attr.h5");
  const size_t name = find(b, std::string("ZZZZ\0", 5));
  size_t dim = name + 8;
  while (get(b, dim, 8) != 4) ++dim;  // the dataspace's one dimension, after the 8-byte-padded datatype
  put(b, dim, 8, uint64_t{1} << 40);
  if (get(b, dim + 8, 8) == 4) put(b, dim + 8, 8, uint64_t{1} << 40);  // and its maximum, when stored
  write_bytes(tmp / "attr.h5", b);
  std::string msg = refusal(tmp / "attr.h5");
  CHECK(contains(msg, "/: attribute 'ZZZZ' at byte"));
  CHECK(contains(msg, "its 1099511627776 elements of 4 bytes need more than the"));

  // A deflate bomb: a chunk whose bytes inflate to far more than a chunk (libhdf5 grew its buffer to fit).
  write_h5(tmp / "bomb.h5", false, [](hid_t f) {
    const hsize_t dims[1] = {4096}, chunk[1] = {4096};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_deflate(dcpl, 9);
    const hid_t d = H5Dcreate2(f, "bomb", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    std::vector<uint8_t> zeros(64 << 20), packed(compressBound(zeros.size()));
    uLongf n = packed.size();
    REQUIRE(compress2(packed.data(), &n, zeros.data(), zeros.size(), 9) == Z_OK);
    const hsize_t offset[1] = {0};
    REQUIRE(H5Dwrite_chunk(d, H5P_DEFAULT, 0, offset, n, packed.data()) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
  });
  msg = refusal(tmp / "bomb.h5");
  CHECK(contains(msg, "/bomb: chunk (0) at byte"));
  CHECK(contains(msg, "it inflates to more than the 4100 bytes of a chunk"));

  // A version 2 object header whose checksum no longer matches (libver latest writes checksummed headers).
  write_h5(tmp / "v2.h5", true, [](hid_t f) { H5Gclose(H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); });
  CHECK(refusal(tmp / "v2.h5") == "");
  b = bytes_of(tmp / "v2.h5");
  {
    const size_t group = find(b, "OHDR", find(b, "OHDR") + 4);  // the second header: the group's
    const uint8_t flags = b.at(group + 5);
    const size_t messages = group + 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0) + (size_t{1} << (flags & 3));
    b.at(messages + 1) ^= 0x01;  // one bit of its first message
  }
  write_bytes(tmp / "v2.h5", b);
  CHECK(contains(refusal(tmp / "v2.h5"), "/g: object header at byte"));
  CHECK(contains(refusal(tmp / "v2.h5"), "checksum mismatch"));

  // Layouts and links stride does not read, by design, each with its name in the message.
  write_h5(tmp / "external.h5", false, [](hid_t f) {
    H5Lcreate_external("other.h5", "/data", f, "ext", H5P_DEFAULT, H5P_DEFAULT);
  });
  CHECK(contains(refusal(tmp / "external.h5"), "link 'ext' is an external link (to another file)"));
  write_h5(tmp / "dense.h5", true, [](hid_t f) {
    for (int i = 0; i < 20; ++i)
      H5Gclose(H5Gcreate2(f, group_name(i).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  });
  CHECK(contains(refusal(tmp / "dense.h5"), "links in dense storage"));
  write_h5(tmp / "extensible.h5", true, [](hid_t f) {
    const hsize_t dims[1] = {10}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {4};
    const hid_t space = H5Screate_simple(1, dims, maxdims);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    const hid_t d = H5Dcreate2(f, "grow", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    const std::vector<uint8_t> v(10, 1);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
  });
  CHECK(contains(refusal(tmp / "extensible.h5"), "/grow: message type 8 at byte"));
  CHECK(contains(refusal(tmp / "extensible.h5"), "an extensible-array chunk index"));

  // The limits hold: a file of many objects against a small object budget.
  write_h5(tmp / "many.h5", false, [](hid_t f) {
    for (int i = 0; i < 10; ++i)
      H5Gclose(H5Gcreate2(f, group_name(i).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  });
  CHECK(refusal(tmp / "many.h5") == "");
  h5::StructureLimits small;
  small.max_objects = 5;
  CHECK(contains(refusal(tmp / "many.h5", small), "more than 5 objects in the file (the limit)"));
  write_bytes(tmp / "text.h5", std::vector<uint8_t>(600, 'x'));
  CHECK(contains(refusal(tmp / "text.h5"), "not an HDF5 file: no HDF5 signature at byte 0, 512, 1024"));
}

TEST_CASE("hdf5 structure: every input the fuzzers found is refused by the walk itself, and every seed passes") {
  int refused = 0, passed = 0;
  for (const char* target : {"checkpoint", "hdf5_dataset"}) {
    for (const auto& entry : fs::directory_iterator(std::string(STRIDE_REPO_DIR) + "/tests/corpus/" + target)) {
      const std::string name = entry.path().filename().string();
      CAPTURE(name);
      const std::string msg = refusal(entry.path().string());
      if (name.rfind("seed-", 0) == 0) {
        CHECK(msg == "");
        ++passed;
      } else {
        CHECK(msg != "");
        ++refused;
      }
    }
  }
  CHECK(refused >= 4);
  CHECK(passed >= 2);
}
