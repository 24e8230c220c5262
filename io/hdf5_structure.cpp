#include "io/hdf5_structure.hpp"

// Field layouts follow the HDF5 File Format Specification (version 3.0, the format of libhdf5 1.10); the
// section is named where a structure is decoded. Every bound checked here is one libhdf5 1.10.8 does not check
// before it allocates, copies or loops (io/hdf5_structure.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride::h5 {
namespace {

constexpr uint64_t kUndefined = ~uint64_t{0};
constexpr int kMaxRank = 32;               // H5S_MAX_RANK
constexpr uint64_t kMaxDimension = uint64_t{1} << 62;
constexpr int kMaxTypeDepth = 8;           // nesting of compound, array, enum and variable-length types
constexpr const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};

std::string num(uint64_t v) { return std::to_string(v); }

// Jenkins' lookup3 hashlittle() with an initial value of 0: the checksum of every version-2 structure.
uint32_t lookup3(const uint8_t* k, size_t length) {
  auto rot = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  uint32_t a, b, c;
  a = b = c = 0xdeadbeef + static_cast<uint32_t>(length);
  auto word = [&](size_t i) {
    return uint32_t{k[i]} | uint32_t{k[i + 1]} << 8 | uint32_t{k[i + 2]} << 16 | uint32_t{k[i + 3]} << 24;
  };
  while (length > 12) {
    a += word(0);
    b += word(4);
    c += word(8);
    a -= c; a ^= rot(c, 4);  c += b;
    b -= a; b ^= rot(a, 6);  a += c;
    c -= b; c ^= rot(b, 8);  b += a;
    a -= c; a ^= rot(c, 16); c += b;
    b -= a; b ^= rot(a, 19); a += c;
    c -= b; c ^= rot(b, 4);  b += a;
    length -= 12;
    k += 12;
  }
  if (length == 0) return c;
  uint8_t tail[12] = {};
  std::memcpy(tail, k, length);
  a += uint32_t{tail[0]} | uint32_t{tail[1]} << 8 | uint32_t{tail[2]} << 16 | uint32_t{tail[3]} << 24;
  b += uint32_t{tail[4]} | uint32_t{tail[5]} << 8 | uint32_t{tail[6]} << 16 | uint32_t{tail[7]} << 24;
  c += uint32_t{tail[8]} | uint32_t{tail[9]} << 8 | uint32_t{tail[10]} << 16 | uint32_t{tail[11]} << 24;
  c ^= b; c -= rot(b, 14);
  a ^= c; a -= rot(c, 11);
  b ^= a; b -= rot(a, 25);
  c ^= b; c -= rot(b, 16);
  a ^= c; a -= rot(c, 4);
  b ^= a; b -= rot(a, 14);
  c ^= b; c -= rot(b, 24);
  return c;
}

// Where a refusal happened: the object (its path from the root) and the structure inside it.
struct Place {
  std::string object;
  std::string structure;
};

// The file's global parameters (superblock) that every decoder needs.
struct Format {
  std::string path;
  int offset_size = 8;  // "Size of Offsets"
  int length_size = 8;  // "Size of Lengths"
};

[[noreturn]] void refuse(const Format& f, const Place& place, uint64_t at, const std::string& why) {
  std::string where = f.path + ": ";
  if (!place.object.empty()) where += place.object + ": ";
  throw IoError(where + place.structure + " at byte " + num(at) + ": " + why);
}

// Bounds-checked little-endian decoding of one structure held in memory; `at` is the file offset of data[0].
class Cursor {
 public:
  Cursor(const Format& f, Place place, const uint8_t* data, size_t size, uint64_t at)
      : f_(f), place_(std::move(place)), data_(data), size_(size), at_(at) {}

  size_t left() const { return size_ - pos_; }
  size_t pos() const { return pos_; }
  uint64_t at() const { return at_ + pos_; }
  const Place& place() const { return place_; }
  const Format& format() const { return f_; }
  [[noreturn]] void fail(const std::string& why) const { refuse(f_, place_, at(), why); }

  void need(uint64_t n, const char* field) const {
    if (n > left())
      fail(std::string(field) + " needs " + num(n) + " bytes, but only " + num(left()) + " remain in the " +
           num(size_) + "-byte structure");
  }
  uint64_t uint(int bytes, const char* field) {
    need(static_cast<uint64_t>(bytes), field);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | data_[pos_ + static_cast<size_t>(i)];
    pos_ += static_cast<size_t>(bytes);
    return v;
  }
  uint8_t u8(const char* field) { return static_cast<uint8_t>(uint(1, field)); }
  uint16_t u16(const char* field) { return static_cast<uint16_t>(uint(2, field)); }
  uint32_t u32(const char* field) { return static_cast<uint32_t>(uint(4, field)); }
  // An address or a length of the file's width; all ones (the "undefined address") comes back as kUndefined.
  uint64_t address(const char* field) { return widen(uint(f_.offset_size, field), f_.offset_size); }
  uint64_t length(const char* field) { return widen(uint(f_.length_size, field), f_.length_size); }
  const uint8_t* take(uint64_t n, const char* field) {
    need(n, field);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  void skip(uint64_t n, const char* field) { take(n, field); }
  // A cursor over the next n bytes, which this one steps over.
  Cursor sub(uint64_t n, const char* field, std::string structure = {}) {
    const uint64_t start = at();
    const uint8_t* p = take(n, field);
    Place place = place_;
    if (!structure.empty()) place.structure = std::move(structure);
    return Cursor(f_, std::move(place), p, static_cast<size_t>(n), start);
  }
  // A NUL-terminated string within the next `n` bytes, which are stepped over.
  std::string cstring(uint64_t n, const char* field) {
    const uint8_t* p = take(n, field);
    const void* nul = std::memchr(p, 0, static_cast<size_t>(n));
    if (!nul) refuse(f_, place_, at() - n, std::string(field) + " of " + num(n) + " bytes has no terminating NUL");
    return std::string(reinterpret_cast<const char*>(p), static_cast<const uint8_t*>(nul) - p);
  }

 private:
  static uint64_t widen(uint64_t v, int bytes) {
    const uint64_t ones = bytes >= 8 ? kUndefined : (uint64_t{1} << (8 * bytes)) - 1;
    return v == ones ? kUndefined : v;
  }
  const Format& f_;
  Place place_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t at_;
};

uint64_t padded8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// A NUL-terminated name inside a datatype, padded with NULs to a multiple of 8 bytes when `padded` (datatype
// versions 1 and 2), stepped over.
void skip_name(Cursor& c, bool padded, const char* field) {
  const size_t start = c.pos();
  while (*c.take(1, field) != 0) {
  }
  if (padded) c.skip(padded8(c.pos() - start) - (c.pos() - start), field);
}

std::optional<uint64_t> mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > kMaxDimension / a) return std::nullopt;
  return a * b;
}

// ---- decoded messages ----

struct Dataspace {
  enum class Kind { scalar, simple, null } kind = Kind::scalar;
  int rank = 0;
  std::array<uint64_t, kMaxRank> dims{}, maxdims{};
  uint64_t points = 1;
};

struct Datatype {
  int cls = 0;
  uint64_t size = 0;
  bool vlen = false;              // this type is variable-length (class 9)
  uint64_t vlen_base_size = 0;    // its base type's size
  bool vlen_inside = false;       // a variable-length type nested in a compound, array, enum or vlen base
};

struct Filter {
  uint16_t id = 0;
  std::vector<uint32_t> values;
};

struct Layout {
  int version = 0;
  int cls = 0;  // 0 compact, 1 contiguous, 2 chunked
  uint64_t compact_size = 0;
  uint64_t address = kUndefined;  // contiguous data, or the chunk index
  uint64_t size = 0;              // contiguous size
  int chunk_rank = 0;             // the dataspace's rank (the message stores one more: the element size)
  std::array<uint64_t, kMaxRank> chunk{};
  uint64_t element_size = 0;
  int index = 0;                  // 0: version 1 B-tree, 1 single chunk, 2 implicit, 3 fixed array
  bool unfiltered_edges = false;  // v4 flag: partial edge chunks are stored without filters
  bool single_filtered = false;
  uint64_t single_size = 0;
  uint32_t single_mask = 0;
  int page_bits = 0;
};

struct Fill {
  bool has_value = false;
  uint64_t size = 0;
};

struct Child {
  std::string name;
  uint64_t address = kUndefined;
};

struct LocalHeap {
  uint64_t data_at = 0;
  std::vector<uint8_t> data;
};

// A version-1 B-tree node's header (III.A.1): signature, node type (0: group, 1: chunk), level and entries
// used, checked against the level its parent implies (-1 at the root: any) and the node's 2K entries; the
// sibling addresses are read past (the walk goes down from the root only).
struct BtreeNodeHeader {
  int level;
  uint64_t used;
};

BtreeNodeHeader read_btree_node_header(Cursor& c, int node_type, int expected_level, uint64_t two_k) {
  if (std::memcmp(c.take(4, "signature"), "TREE", 4) != 0) c.fail("expected the TREE signature");
  if (c.u8("node type") != node_type)
    c.fail(node_type == 0 ? "a chunk B-tree node where a group node belongs"
                          : "a group B-tree node where a chunk node belongs");
  const int level = c.u8("node level");
  const uint64_t used = c.u16("entries used");
  if (expected_level >= 0 && level != expected_level)
    c.fail("level " + num(static_cast<uint64_t>(level)) + ", expected " + num(static_cast<uint64_t>(expected_level)));
  if (used > two_k) c.fail(num(used) + " entries in a node of " + num(two_k));
  c.address("left sibling");
  c.address("right sibling");
  return BtreeNodeHeader{level, used};
}

// One chunk as an index records it.
struct ChunkRecord {
  std::array<uint64_t, kMaxRank> offset{};
  uint64_t address = kUndefined;
  uint64_t stored = 0;
  uint32_t filter_mask = 0;
};

class Walker {
 public:
  Walker(const std::string& path, const StructureLimits& limits) : limits_(limits) { f_.path = path; }
  ~Walker() {
    if (fd_ >= 0) ::close(fd_);
  }
  Walker(const Walker&) = delete;
  Walker& operator=(const Walker&) = delete;

  void run();

 private:
  // ---- reading ----
  std::vector<uint8_t> read(uint64_t at, uint64_t n, const Place& place, const char* what, bool metadata = true);
  uint64_t absolute(uint64_t address, const Place& place, uint64_t referenced_at, const char* what) const;
  void count_node(const Place& place, uint64_t at);

  // ---- structures ----
  void read_superblock(uint64_t at);
  void set_end(const Cursor& c, uint64_t eof);
  struct Message {
    unsigned type = 0;
    uint8_t flags = 0;
    uint64_t at = 0;
    std::vector<uint8_t> data;
  };
  std::vector<Message> read_header(uint64_t address, const std::string& object);
  void parse_messages(const std::vector<uint8_t>& chunk, size_t begin, size_t end, uint64_t chunk_at, int version,
                      bool creation_order, const std::string& object, std::vector<Message>& out,
                      std::vector<std::pair<uint64_t, uint64_t>>& continuations);
  void walk_object(uint64_t address, const std::string& object, bool root);
  void walk_extension(uint64_t address);

  Dataspace parse_dataspace(Cursor& c) const;
  Datatype parse_datatype(Cursor& c, int depth) const;
  Layout parse_layout(Cursor& c) const;
  std::vector<Filter> parse_pipeline(Cursor& c) const;
  Fill parse_fill(Cursor& c, bool old) const;
  void parse_attribute(Cursor& c);
  void check_vlen_data(Cursor data, const Datatype& type, uint64_t count);
  std::optional<Child> parse_link(Cursor& c) const;

  const std::map<unsigned, uint64_t>& global_heap(uint64_t address, const Place& place, uint64_t referenced_at);
  const LocalHeap& local_heap(uint64_t address, const Place& place, uint64_t referenced_at);
  std::string heap_name(const LocalHeap& heap, uint64_t offset, const Place& place, uint64_t referenced_at) const;
  void walk_group_btree(uint64_t address, int expected_level, const LocalHeap& heap, const Place& place,
                        uint64_t referenced_at, std::vector<Child>& out);
  void read_symbol_node(uint64_t address, const LocalHeap& heap, const Place& place, uint64_t referenced_at,
                        std::vector<Child>& out);

  using ChunkVisitor = std::function<void(const ChunkRecord&)>;
  void check_dataset(const Place& place, uint64_t header_at, const Dataspace& space, const Datatype& type,
                     const Layout& layout, const std::vector<Filter>& filters, const std::optional<Fill>& fill);
  void walk_chunk_btree(uint64_t address, int expected_level, const Layout& layout, const Place& place,
                        uint64_t referenced_at, const ChunkVisitor& visit);
  void walk_fixed_array(const Layout& layout, const std::array<uint64_t, kMaxRank>& grid, uint64_t chunks,
                        uint64_t chunk_bytes, bool filtered, const Place& place, uint64_t referenced_at,
                        const ChunkVisitor& visit);
  void check_chunk(const ChunkRecord& chunk, const Dataspace& space, const Layout& layout,
                   const std::vector<Filter>& filters, uint64_t chunk_bytes, const Place& dataset);
  uint64_t inflated_size(uint64_t at, uint64_t n, uint64_t cap, const Place& place);

  Format f_;
  const StructureLimits& limits_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t base_ = 0;       // absolute offset of address 0 (the superblock's position)
  uint64_t end_ = 0;        // one past the last byte any structure may occupy
  unsigned group_leaf_k_ = 4, group_internal_k_ = 16, chunk_k_ = 32;
  int64_t metadata_bytes_ = 0, objects_ = 0, nodes_ = 0;
  uint64_t root_cached_btree_ = kUndefined, root_cached_heap_ = kUndefined;
  std::set<uint64_t> headers_done_, nodes_seen_;
  std::map<uint64_t, std::map<unsigned, uint64_t>> global_heaps_;
  std::map<uint64_t, LocalHeap> local_heaps_;
  std::optional<std::array<uint64_t, kMaxRank>> last_chunk_;  // the previous chunk of a B-tree walk
};

// ---- reading ----

std::vector<uint8_t> Walker::read(uint64_t at, uint64_t n, const Place& place, const char* what, bool metadata) {
  if (at > end_ || n > end_ - at)
    refuse(f_, place, at,
           std::string(what) + " of " + num(n) + " bytes lies past the end of the file (" + num(end_) + " bytes" +
               (end_ < file_size_ ? " that the superblock declares" : "") + ")");
  if (metadata) {
    metadata_bytes_ += static_cast<int64_t>(n);
    if (metadata_bytes_ > limits_.max_metadata_bytes)
      refuse(f_, place, at, "reading " + std::string(what) + " would take the metadata read past the limit of " +
                                num(static_cast<uint64_t>(limits_.max_metadata_bytes)) + " bytes");
  }
  std::vector<uint8_t> out(static_cast<size_t>(n));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw IoError(f_.path + ": cannot read " + num(n) + " bytes at byte " + num(at) + ": " +
                    (r < 0 ? std::strerror(errno) : "unexpected end of file"));
    done += static_cast<size_t>(r);
  }
  return out;
}

uint64_t Walker::absolute(uint64_t address, const Place& place, uint64_t referenced_at, const char* what) const {
  if (address == kUndefined || address >= end_ - base_)
    refuse(f_, place, referenced_at,
           std::string(what) + " address " + (address == kUndefined ? "undefined" : num(address)) +
               " lies outside the file's " + num(end_ - base_) + " bytes");
  return base_ + address;
}

void Walker::count_node(const Place& place, uint64_t at) {
  if (++nodes_ > limits_.max_nodes)
    refuse(f_, place, at, "more than " + num(static_cast<uint64_t>(limits_.max_nodes)) +
                              " index nodes, chunks and heaps in the file (the limit)");
}

// ---- II.A superblock ----

// The end-of-file address counts from the file's first byte, user block included (libhdf5 compares it with the
// file's size as it is), while every other address counts from the base address.
void Walker::set_end(const Cursor& c, uint64_t eof) {
  if (eof == kUndefined || eof > file_size_ || eof < base_)
    c.fail("the file is truncated: the superblock declares " + (eof == kUndefined ? "an undefined" : num(eof)) +
           " bytes, the file has " + num(file_size_));
  end_ = eof;
}

void Walker::read_superblock(uint64_t at) {
  const Place place{"", "superblock"};
  base_ = at;
  end_ = file_size_;
  const std::vector<uint8_t> head = read(at, std::min<uint64_t>(file_size_ - at, 256), place, "the superblock");
  Cursor c(f_, place, head.data(), head.size(), at);
  c.skip(8, "signature");
  const uint8_t version = c.u8("version");
  uint64_t eof = kUndefined;
  uint64_t root = kUndefined;
  auto check_sizes = [&](uint64_t offsets, uint64_t lengths) {
    for (uint64_t s : {offsets, lengths})
      if (s != 2 && s != 4 && s != 8)
        c.fail("size of offsets " + num(offsets) + " and of lengths " + num(lengths) + ": expected 2, 4 or 8 each");
    f_.offset_size = static_cast<int>(offsets);
    f_.length_size = static_cast<int>(lengths);
  };
  if (version == 0 || version == 1) {
    c.skip(3, "free-space, root entry and reserved versions");
    if (c.u8("shared header message version") != 0) c.fail("shared header message version is not 0");
    const uint8_t offsets = c.u8("size of offsets");
    const uint8_t lengths = c.u8("size of lengths");
    check_sizes(offsets, lengths);
    c.skip(1, "reserved");
    group_leaf_k_ = c.u16("group leaf node K");
    group_internal_k_ = c.u16("group internal node K");
    if (group_leaf_k_ == 0 || group_internal_k_ == 0) c.fail("a group node K of 0");
    c.skip(4, "file consistency flags");
    if (version == 1) {
      chunk_k_ = c.u16("indexed storage internal node K");
      if (chunk_k_ == 0) c.fail("an indexed storage node K of 0");
      c.skip(2, "reserved");
    }
    const uint64_t base = c.address("base address");
    if (base != at) c.fail("base address " + num(base) + " differs from the superblock's position " + num(at));
    c.address("free-space info address");
    eof = c.address("end-of-file address");
    if (c.address("driver information block address") != kUndefined)
      c.fail("a driver information block (family or multi-file storage), which stride does not read");
    // II.B root group symbol table entry
    c.length("root link name offset");
    root = c.address("root object header address");
    const uint32_t cache = c.u32("root cache type");
    c.skip(4, "reserved");
    Cursor scratch = c.sub(16, "root scratch pad");
    if (cache == 1) {
      root_cached_btree_ = scratch.address("root cached B-tree address");
      root_cached_heap_ = scratch.address("root cached heap address");
    } else if (cache > 1) {
      c.fail("root cache type " + num(cache) + ", expected 0 or 1");
    }
  } else if (version == 2 || version == 3) {
    const uint8_t offsets = c.u8("size of offsets");
    const uint8_t lengths = c.u8("size of lengths");
    check_sizes(offsets, lengths);
    c.skip(1, "file consistency flags");
    const uint64_t base = c.address("base address");
    if (base != at) c.fail("base address " + num(base) + " differs from the superblock's position " + num(at));
    const uint64_t extension = c.address("superblock extension address");
    eof = c.address("end-of-file address");
    root = c.address("root object header address");
    const size_t covered = c.pos();
    const uint32_t stored = c.u32("checksum");
    if (lookup3(head.data(), covered) != stored) c.fail("checksum mismatch (a corrupt superblock)");
    set_end(c, eof);
    if (extension != kUndefined) walk_extension(extension);
  } else {
    c.fail("superblock version " + num(version) + ", expected 0 to 3");
  }
  if (version < 2) set_end(c, eof);
  walk_object(root, "/", /*root=*/true);
}

void Walker::walk_extension(uint64_t address) {
  const std::string object = "superblock extension";
  for (const Message& m : read_header(address, object)) {
    Cursor c(f_, {object, "message type " + num(m.type)}, m.data.data(), m.data.size(), m.at);
    switch (m.type) {
      case 0x00: case 0x17: break;  // null, file space info (free-space bookkeeping, not read for reading)
      case 0x13: {                  // B-tree 'K' values
        if (c.u8("version") != 0) c.fail("B-tree K message version is not 0");
        chunk_k_ = c.u16("indexed storage internal node K");
        group_internal_k_ = c.u16("group internal node K");
        group_leaf_k_ = c.u16("group leaf node K");
        if (!chunk_k_ || !group_internal_k_ || !group_leaf_k_) c.fail("a B-tree K of 0");
        break;
      }
      case 0x0F: c.fail("a shared object header message table, which stride does not read");
      case 0x14: c.fail("driver information (family or multi-file storage), which stride does not read");
      default: c.fail("message type " + num(m.type) + " does not belong in a superblock extension");
    }
  }
}

// ---- IV.A.1 object headers ----

std::vector<Walker::Message> Walker::read_header(uint64_t address, const std::string& object) {
  const Place place{object, "object header"};
  const uint64_t at = absolute(address, place, address, "object header");
  if (++objects_ > limits_.max_objects)
    refuse(f_, place, at, "more than " + num(static_cast<uint64_t>(limits_.max_objects)) + " objects in the file (the limit)");
  std::vector<Message> messages;
  std::vector<std::pair<uint64_t, uint64_t>> continuations;  // (absolute address, length)
  std::set<uint64_t> chunks_seen{at};
  int version = 0;
  bool creation_order = false;
  const std::vector<uint8_t> first = read(at, std::min<uint64_t>(end_ - at, 6), place, "the header prefix");
  if (first.size() >= 5 && std::memcmp(first.data(), "OHDR", 4) == 0) {
    // IV.A.1.b version 2: signature, version, flags, optional times and attribute thresholds, chunk 0 size.
    Cursor p(f_, place, first.data(), first.size(), at);
    p.skip(4, "signature");
    version = p.u8("version");
    if (version != 2) p.fail("version " + num(version) + " after the OHDR signature, expected 2");
    const uint8_t flags = p.u8("flags");
    if (flags & 0xC0) p.fail("unknown flags 0x" + num(flags));
    creation_order = flags & 0x04;
    const uint64_t prefix = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    const int size_bytes = 1 << (flags & 3);
    const std::vector<uint8_t> pre = read(at, prefix + static_cast<uint64_t>(size_bytes), place, "the header prefix");
    Cursor q(f_, place, pre.data() + prefix, pre.size() - prefix, at + prefix);
    const uint64_t size0 = q.uint(size_bytes, "size of chunk 0");
    const uint64_t total = prefix + static_cast<uint64_t>(size_bytes) + size0 + 4;
    if (size0 > end_ || total > end_ - at)
      refuse(f_, place, at, "chunk 0 of " + num(size0) + " bytes lies past the end of the file");
    const std::vector<uint8_t> chunk = read(at, total, place, "chunk 0");
    Cursor sum(f_, place, chunk.data() + total - 4, 4, at + total - 4);
    if (lookup3(chunk.data(), static_cast<size_t>(total - 4)) != sum.u32("checksum"))
      refuse(f_, place, at, "checksum mismatch (a corrupt object header)");
    parse_messages(chunk, static_cast<size_t>(total - 4 - size0), static_cast<size_t>(total - 4), at, version,
                   creation_order, object, messages, continuations);
  } else {
    // IV.A.1.a version 1: version, reserved, message count, reference count, chunk 0 size; messages from byte 16.
    const std::vector<uint8_t> pre = read(at, 16, place, "the header prefix");
    Cursor p(f_, place, pre.data(), pre.size(), at);
    version = p.u8("version");
    if (version != 1) p.fail("an object header of version " + num(version) + " (expected 1, or the OHDR signature)");
    p.skip(1, "reserved");
    p.u16("message count");
    p.u32("reference count");
    const uint64_t size0 = p.u32("header size");
    if (size0 % 8) p.fail("header size " + num(size0) + " is not a multiple of 8");
    if (size0 > end_ || at + 16 > end_ - size0) p.fail("chunk 0 of " + num(size0) + " bytes lies past the end of the file");
    const std::vector<uint8_t> chunk = read(at + 16, size0, place, "chunk 0");
    parse_messages(chunk, 0, chunk.size(), at + 16, version, false, object, messages, continuations);
  }
  for (size_t i = 0; i < continuations.size(); ++i) {
    const auto [c_at, c_len] = continuations[i];
    const Place cplace{object, "object header continuation"};
    if (!chunks_seen.insert(c_at).second) refuse(f_, cplace, c_at, "a continuation chunk reached twice (a cycle)");
    if (chunks_seen.size() > 4096) refuse(f_, cplace, c_at, "more than 4096 chunks in one object header");
    const std::vector<uint8_t> chunk = read(c_at, c_len, cplace, "the continuation chunk");
    if (version == 1) {
      if (c_len % 8) refuse(f_, cplace, c_at, "length " + num(c_len) + " is not a multiple of 8");
      parse_messages(chunk, 0, chunk.size(), c_at, version, false, object, messages, continuations);
    } else {
      if (c_len < 8 || std::memcmp(chunk.data(), "OCHK", 4) != 0)
        refuse(f_, cplace, c_at, "expected the OCHK signature in a chunk of at least 8 bytes");
      Cursor sum(f_, cplace, chunk.data() + c_len - 4, 4, c_at + c_len - 4);
      if (lookup3(chunk.data(), static_cast<size_t>(c_len - 4)) != sum.u32("checksum"))
        refuse(f_, cplace, c_at, "checksum mismatch (a corrupt continuation chunk)");
      parse_messages(chunk, 4, static_cast<size_t>(c_len - 4), c_at, version, creation_order, object, messages,
                     continuations);
    }
  }
  return messages;
}

void Walker::parse_messages(const std::vector<uint8_t>& chunk, size_t begin, size_t end, uint64_t chunk_at,
                            int version, bool creation_order, const std::string& object, std::vector<Message>& out,
                            std::vector<std::pair<uint64_t, uint64_t>>& continuations) {
  const Place place{object, "object header message"};
  Cursor c(f_, place, chunk.data() + begin, end - begin, chunk_at + begin);
  const size_t header = version == 1 ? 8 : (creation_order ? 6 : 4);
  while (c.left() >= header) {
    const uint64_t at = c.at();
    Message m;
    m.type = version == 1 ? c.u16("message type") : c.u8("message type");
    const uint64_t size = c.u16("message size");
    m.flags = c.u8("message flags");
    if (version == 1) c.skip(3, "reserved");
    if (version == 2 && creation_order) c.skip(2, "creation order");
    if (version == 1 && size % 8) refuse(f_, place, at, "message size " + num(size) + " is not a multiple of 8");
    if (m.flags & 0x02)
      refuse(f_, place, at, "message type " + num(m.type) + " is shared (stored elsewhere), which stride does not read");
    m.at = c.at();
    const uint8_t* data = c.take(size, "message data");
    m.data.assign(data, data + size);
    if (out.size() >= 65536) refuse(f_, place, at, "more than 65536 messages in one object header");
    if (m.type == 0x10) {  // IV.A.2.q continuation: address and length of the next chunk
      Cursor k(f_, {object, "continuation message"}, m.data.data(), m.data.size(), m.at);
      const uint64_t address = k.address("continuation address");
      const uint64_t length = k.length("continuation length");
      const uint64_t c_at = absolute(address, k.place(), m.at, "continuation chunk");
      if (length == kUndefined || length == 0 || length > end_ - c_at)
        k.fail("a continuation chunk of " + (length == kUndefined ? "undefined" : num(length)) +
               " bytes at byte " + num(c_at) + " does not fit in the file");
      continuations.emplace_back(c_at, length);
    }
    out.push_back(std::move(m));
  }
  if (version == 1 && c.left() != 0) c.fail("the chunk's last " + num(c.left()) + " bytes hold no whole message");
}

// ---- IV.A.2 messages ----

Dataspace Walker::parse_dataspace(Cursor& c) const {  // IV.A.2.b
  Dataspace s;
  const uint8_t version = c.u8("dataspace version");
  if (version != 1 && version != 2) c.fail("dataspace version " + num(version) + ", expected 1 or 2");
  s.rank = c.u8("dataspace rank");
  const uint8_t flags = c.u8("dataspace flags");
  if (s.rank > kMaxRank) c.fail("dataspace rank " + num(static_cast<uint64_t>(s.rank)) + ", at most 32");
  if (version == 1) {
    if (flags & ~uint8_t{3}) c.fail("unknown dataspace flags");
    c.skip(5, "reserved");
    s.kind = s.rank == 0 ? Dataspace::Kind::scalar : Dataspace::Kind::simple;
  } else {
    if (flags & ~uint8_t{1}) c.fail("unknown dataspace flags");
    const uint8_t type = c.u8("dataspace type");
    if (type > 2) c.fail("dataspace type " + num(type) + ", expected scalar (0), simple (1) or null (2)");
    s.kind = static_cast<Dataspace::Kind>(type);
    if ((s.kind != Dataspace::Kind::simple) != (s.rank == 0))
      c.fail("a " + std::string(type == 1 ? "simple dataspace of rank 0" : "scalar or null dataspace with dimensions"));
  }
  s.points = s.kind == Dataspace::Kind::null ? 0 : 1;
  for (int i = 0; i < s.rank; ++i) {
    s.dims[i] = c.length("dimension size");
    if (s.dims[i] > kMaxDimension) c.fail("dimension " + num(static_cast<uint64_t>(i)) + " is too large");
    const auto p = mul(s.points, s.dims[i]);
    if (!p) c.fail("the dataspace's element count overflows");
    s.points = *p;
  }
  for (int i = 0; i < s.rank; ++i) {
    s.maxdims[i] = (flags & 1) ? c.length("maximum dimension size") : s.dims[i];
    if (s.maxdims[i] != kUndefined && s.maxdims[i] < s.dims[i])
      c.fail("dimension " + num(static_cast<uint64_t>(i)) + " is " + num(s.dims[i]) + ", above its maximum " +
             num(s.maxdims[i]));
  }
  if (version == 1 && (flags & 2)) c.skip(static_cast<uint64_t>(s.rank) * c.format().length_size, "permutation");
  return s;
}

Datatype Walker::parse_datatype(Cursor& c, int depth) const {  // IV.A.2.d
  if (depth > kMaxTypeDepth) c.fail("datatypes nested more than " + num(kMaxTypeDepth) + " deep");
  Datatype t;
  const uint8_t class_version = c.u8("datatype class and version");
  t.cls = class_version & 0x0F;
  const int version = class_version >> 4;
  const uint32_t bits = c.u8("class bits 0-7") | uint32_t{c.u8("class bits 8-15")} << 8 |
                        uint32_t{c.u8("class bits 16-23")} << 16;
  t.size = c.u32("datatype size");
  if (version < 1 || version > 3) c.fail("datatype version " + num(static_cast<uint64_t>(version)) + ", expected 1 to 3");
  if (t.size == 0 || t.size > static_cast<uint64_t>(limits_.max_element_bytes))
    c.fail("an element size of " + num(t.size) + " bytes (limit " +
           num(static_cast<uint64_t>(limits_.max_element_bytes)) + ")");
  auto bit_range = [&](const char* what) {
    const uint64_t offset = c.u16("bit offset");
    const uint64_t precision = c.u16("bit precision");
    if (precision == 0 || offset + precision > t.size * 8)
      c.fail(std::string(what) + " of " + num(precision) + " bits at bit " + num(offset) + " does not fit in " +
             num(t.size) + " bytes");
  };
  switch (t.cls) {
    case 0:  // fixed-point
      if (t.size > 16) c.fail("an integer of " + num(t.size) + " bytes");
      bit_range("an integer");
      break;
    case 4:  // bitfield
      bit_range("a bitfield");
      break;
    case 1: {  // floating-point: only the IEEE layouts (libhdf5 converts others bit by bit, with shifts it trusts)
      const uint64_t offset = c.u16("bit offset"), precision = c.u16("bit precision");
      const uint64_t exp_at = c.u8("exponent location"), exp_bits = c.u8("exponent size");
      const uint64_t man_at = c.u8("mantissa location"), man_bits = c.u8("mantissa size");
      const uint64_t bias = c.u32("exponent bias");
      const uint64_t sign_at = (bits >> 8) & 0xFF;
      const bool ieee = offset == 0 && precision == t.size * 8 && man_at == 0 && exp_at == man_bits &&
                        sign_at == precision - 1 && ((bits >> 4) & 3) == 2 && !(bits & 0x40) &&
                        ((t.size == 2 && exp_bits == 5 && man_bits == 10 && bias == 15) ||
                         (t.size == 4 && exp_bits == 8 && man_bits == 23 && bias == 127) ||
                         (t.size == 8 && exp_bits == 11 && man_bits == 52 && bias == 1023));
      if (!ieee) c.fail("a floating-point type of " + num(t.size) + " bytes that is not IEEE 754 binary16, 32 or 64");
      break;
    }
    case 3:  // string
      if ((bits & 0x0F) > 2 || ((bits >> 4) & 0x0F) > 1) c.fail("unknown string padding or character set");
      break;
    case 5: {  // opaque: an ASCII tag whose padded length is in the class bits
      const uint64_t tag = bits & 0xFF;
      c.skip(tag, "opaque tag");
      break;
    }
    case 6: {  // compound
      const uint64_t members = bits & 0xFFFF;
      if (members == 0) c.fail("a compound type without members");
      for (uint64_t i = 0; i < members; ++i) {
        skip_name(c, version < 3, "member name");
        uint64_t offset = 0;
        if (version == 3) {
          const int width = t.size < (1u << 8) ? 1 : t.size < (1u << 16) ? 2 : t.size < (1u << 24) ? 3 : 4;
          offset = c.uint(width, "member offset");
        } else {
          offset = c.u32("member offset");
          if (version == 1) {
            const uint8_t rank = c.u8("member dimensionality");
            if (rank != 0) c.fail("an old-style array member (version 1 compound), which stride does not read");
            c.skip(3 + 4 + 4 + 16, "member permutation and dimensions");
          }
        }
        const Datatype m = parse_datatype(c, depth + 1);
        if (offset > t.size || m.size > t.size - offset)
          c.fail("member " + num(i) + " (" + num(m.size) + " bytes at offset " + num(offset) + ") overruns the " +
                 num(t.size) + "-byte compound");
        t.vlen_inside = t.vlen_inside || m.vlen || m.vlen_inside;
      }
      break;
    }
    case 7:  // reference: object (the width of an offset) or dataset region (4 more)
      if ((bits & 0x0F) > 1) c.fail("unknown reference type");
      break;
    case 8: {  // enumeration: base integer type, names, values
      const uint64_t members = bits & 0xFFFF;
      const Datatype base = parse_datatype(c, depth + 1);
      if (base.cls != 0 || base.size != t.size) c.fail("an enumeration whose base is not an integer of its size");
      for (uint64_t i = 0; i < members; ++i) skip_name(c, version < 3, "enumeration name");
      const auto values = mul(members, base.size);
      if (!values) c.fail("enumeration values overflow");
      c.skip(*values, "enumeration values");
      break;
    }
    case 9: {  // variable-length: sequence or string, then the base type
      const uint32_t kind = bits & 0x0F;
      if (kind > 1 || ((bits >> 4) & 0x0F) > 2 || ((bits >> 8) & 0x0F) > 1)
        c.fail("unknown variable-length type, padding or character set");
      const uint64_t element = 4 + static_cast<uint64_t>(c.format().offset_size) + 4;
      if (t.size != element)
        c.fail("a variable-length element of " + num(t.size) + " bytes, expected " + num(element));
      const Datatype base = parse_datatype(c, depth + 1);
      t.vlen = true;
      t.vlen_base_size = base.size;
      t.vlen_inside = base.vlen || base.vlen_inside;
      break;
    }
    case 10: {  // array: rank, dimensions (and, before version 3, a permutation), base type
      if (version < 2) c.fail("an array type of version 1");
      const uint8_t rank = c.u8("array rank");
      if (rank == 0 || rank > kMaxRank) c.fail("array rank " + num(rank) + ", expected 1 to 32");
      if (version == 2) c.skip(3, "reserved");
      uint64_t count = 1;
      for (int i = 0; i < rank; ++i) {
        const auto n = mul(count, c.u32("array dimension"));
        if (!n) c.fail("array dimensions overflow");
        count = *n;
      }
      if (version == 2) c.skip(4 * uint64_t{rank}, "array permutation");
      const Datatype base = parse_datatype(c, depth + 1);
      const auto bytes = mul(count, base.size);
      if (!bytes || *bytes != t.size)
        c.fail("an array of " + num(count) + " elements of " + num(base.size) + " bytes declared as " + num(t.size) +
               " bytes");
      t.vlen_inside = base.vlen || base.vlen_inside;
      break;
    }
    default:
      c.fail("datatype class " + num(static_cast<uint64_t>(t.cls)) +
             (t.cls == 2 ? " (time)" : "") + ", which stride does not read");
  }
  return t;
}

Layout Walker::parse_layout(Cursor& c) const {  // IV.A.2.i
  Layout l;
  l.version = c.u8("layout version");
  if (l.version != 3 && l.version != 4)
    c.fail("data layout version " + num(static_cast<uint64_t>(l.version)) +
           ", expected 3 or 4 (versions 1 and 2 are from HDF5 before 1.6)");
  l.cls = c.u8("layout class");
  if (l.cls == 0) {
    l.compact_size = c.u16("compact data size");
    c.skip(l.compact_size, "compact data");
  } else if (l.cls == 1) {
    l.address = c.address("contiguous data address");
    l.size = c.length("contiguous data size");
  } else if (l.cls == 2) {
    uint8_t flags = 0;
    if (l.version == 4) {
      flags = c.u8("chunked layout flags");
      if (flags & ~uint8_t{3}) c.fail("unknown chunked layout flags");
      l.unfiltered_edges = flags & 1;
    }
    const uint8_t dims = c.u8("chunk dimensionality");
    if (dims < 2 || dims > kMaxRank + 1)
      c.fail("chunk dimensionality " + num(dims) + ", expected 2 to 33 (the rank and the element size)");
    int width = 4;
    if (l.version == 3) {
      l.address = c.address("chunk B-tree address");
    } else {
      width = c.u8("dimension size width");
      if (width < 1 || width > 8) c.fail("a dimension size width of " + num(static_cast<uint64_t>(width)));
    }
    l.chunk_rank = dims - 1;
    for (int i = 0; i < l.chunk_rank; ++i) {
      l.chunk[i] = c.uint(width, "chunk dimension");
      if (l.chunk[i] == 0 || l.chunk[i] > kMaxDimension) c.fail("chunk dimension " + num(static_cast<uint64_t>(i)) + " is 0 or too large");
    }
    l.element_size = c.uint(width, "chunk element size");
    if (l.version == 4) {
      l.index = c.u8("chunk index type");
      switch (l.index) {
        case 1:
          l.single_filtered = flags & 2;
          if (l.single_filtered) {
            l.single_size = c.length("filtered chunk size");
            l.single_mask = c.u32("filter mask");
          }
          break;
        case 2: break;
        case 3:
          l.page_bits = c.u8("fixed array page bits");
          if (l.page_bits == 0 || l.page_bits > 31) c.fail("fixed array page bits " + num(static_cast<uint64_t>(l.page_bits)));
          break;
        case 4:
          c.fail("an extensible-array chunk index (HDF5 1.10's libver='latest' for a resizable dataset), which stride "
                 "does not read; write the file with h5py's default libver");
        case 5:
          c.fail("a version 2 B-tree chunk index (libver='latest'), which stride does not read; rewrite the file "
                 "with h5py's default libver");
        default: c.fail("chunk index type " + num(static_cast<uint64_t>(l.index)) + ", expected 1 to 5");
      }
      l.address = c.address("chunk index address");
    }
  } else if (l.cls == 3) {
    c.fail("a virtual dataset (data in other files), which stride does not read");
  } else {
    c.fail("layout class " + num(static_cast<uint64_t>(l.cls)) + ", expected 0 to 2");
  }
  return l;
}

std::vector<Filter> Walker::parse_pipeline(Cursor& c) const {  // IV.A.2.l
  const uint8_t version = c.u8("filter pipeline version");
  if (version != 1 && version != 2) c.fail("filter pipeline version " + num(version) + ", expected 1 or 2");
  const uint8_t count = c.u8("number of filters");
  if (count > 32) c.fail(num(count) + " filters, at most 32");
  if (version == 1) c.skip(6, "reserved");
  std::vector<Filter> filters;
  for (int i = 0; i < count; ++i) {
    Filter f;
    f.id = c.u16("filter id");
    const uint64_t name = (version == 1 || f.id >= 256) ? c.u16("filter name length") : 0;
    if (version == 1 && name % 8) c.fail("filter name length " + num(name) + " is not a multiple of 8");
    c.u16("filter flags");
    const uint64_t values = c.u16("number of client values");
    c.skip(name, "filter name");
    for (uint64_t v = 0; v < values; ++v) f.values.push_back(c.u32("client value"));
    if (version == 1 && values % 2) c.skip(4, "client value padding");
    if (f.id < 1 || f.id > 3)
      c.fail("filter " + num(f.id) + (f.id == 4 ? " (szip)" : f.id == 5 ? " (nbit)" : f.id == 6 ? " (scaleoffset)" : "") +
             ", which stride does not read: only deflate (1), shuffle (2) and fletcher32 (3)");
    for (const Filter& g : filters)
      if (g.id == f.id) c.fail("filter " + num(f.id) + " appears twice in the pipeline");
    if (f.id == 1 && (f.values.size() != 1 || f.values[0] > 9)) c.fail("deflate takes one level 0-9");
    if (f.id == 2 && (f.values.size() != 1 || f.values[0] == 0)) c.fail("shuffle takes one element size > 0");
    filters.push_back(std::move(f));
  }
  return filters;
}

Fill Walker::parse_fill(Cursor& c, bool old) const {  // IV.A.2.e and IV.A.2.f
  Fill fill;
  auto value = [&] {
    fill.size = c.u32("fill value size");
    fill.has_value = fill.size > 0;
    if (!old && fill.size > 0x7FFFFFFF) c.fail("a negative fill value size");
    c.skip(fill.size, "fill value");
  };
  if (old) {
    value();
    return fill;
  }
  const uint8_t version = c.u8("fill value version");
  if (version < 1 || version > 3) c.fail("fill value version " + num(version) + ", expected 1 to 3");
  if (version < 3) {
    c.skip(2, "allocation and write times");
    if (c.u8("fill value defined")) value();
  } else {
    const uint8_t flags = c.u8("fill value flags");
    if (flags & 0xC0) c.fail("unknown fill value flags");
    if ((flags & 0x10) && (flags & 0x20)) c.fail("a fill value both undefined and given");
    if (flags & 0x20) value();
  }
  return fill;
}

void Walker::parse_attribute(Cursor& c) {  // IV.A.2.m
  const uint8_t version = c.u8("attribute version");
  if (version < 1 || version > 3) c.fail("attribute version " + num(version) + ", expected 1 to 3");
  const uint8_t flags = c.u8(version == 1 ? "reserved" : "attribute flags");
  if (version > 1 && (flags & 3)) c.fail("an attribute with a shared datatype or dataspace, which stride does not read");
  if (version > 1 && flags) c.fail("unknown attribute flags");
  const uint64_t name_size = c.u16("attribute name size");
  const uint64_t type_size = c.u16("attribute datatype size");
  const uint64_t space_size = c.u16("attribute dataspace size");
  if (version == 3 && c.u8("attribute name character set") > 1) c.fail("unknown attribute name character set");
  auto padded = [&](uint64_t n) { return version == 1 ? padded8(n) : n; };
  if (name_size == 0) c.fail("an attribute without a name");
  Cursor name_bytes = c.sub(padded(name_size), "attribute name");
  const std::string name = echo(name_bytes.cstring(name_size, "attribute name"));
  Place place = c.place();
  place.structure = "attribute '" + name + "'";
  Cursor type_bytes = c.sub(padded(type_size), "attribute datatype", place.structure + " datatype");
  const Datatype type = parse_datatype(type_bytes, 0);
  if (type_bytes.pos() > type_size) type_bytes.fail("the datatype runs past its declared " + num(type_size) + " bytes");
  Cursor space_bytes = c.sub(padded(space_size), "attribute dataspace", place.structure + " dataspace");
  const Dataspace space = parse_dataspace(space_bytes);
  if (space_bytes.pos() > space_size) space_bytes.fail("the dataspace runs past its declared " + num(space_size) + " bytes");
  const auto bytes = mul(space.points, type.size);
  if (!bytes || *bytes > c.left())
    refuse(f_, place, c.at(),
           "its " + num(space.points) + " elements of " + num(type.size) + " bytes need more than the " +
               num(c.left()) + " bytes the message holds");
  if (type.vlen_inside)
    refuse(f_, place, c.at(), "a variable-length type nested inside another, which stride does not read");
  const uint64_t data_at = c.at();
  Cursor data(c.format(), place, c.take(*bytes, "attribute data"), static_cast<size_t>(*bytes), data_at);
  if (type.vlen) check_vlen_data(data, type, space.points);
}

// Each variable-length element is its length, then a global heap ID (collection address, object index).
// libhdf5 copies the whole heap object into a buffer of length x base-size bytes and allocates from the
// length alone, so the object must exist and hold exactly that many bytes.
void Walker::check_vlen_data(Cursor data, const Datatype& type, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t at = data.at();
    const uint64_t length = data.u32("variable-length size");
    const uint64_t collection = data.address("global heap collection address");
    const uint64_t index = data.u32("global heap object index");
    if (collection == 0) continue;  // libhdf5's null element: nothing is read
    const auto& objects = global_heap(collection, data.place(), at);
    const auto it = objects.find(static_cast<unsigned>(index));
    if (index == 0 || index > 0xFFFF || it == objects.end())
      refuse(f_, data.place(), at, "element " + num(i) + " points to object " + num(index) +
                                       ", which its global heap collection does not hold");
    const auto want = mul(length, type.vlen_base_size);
    if (!want || *want != it->second)
      refuse(f_, data.place(), at, "element " + num(i) + " claims " + num(length) + " values of " +
                                       num(type.vlen_base_size) + " bytes, its heap object holds " + num(it->second) +
                                       " bytes");
  }
}

std::optional<Child> Walker::parse_link(Cursor& c) const {  // IV.A.2.g
  if (c.u8("link version") != 1) c.fail("link message version is not 1");
  const uint8_t flags = c.u8("link flags");
  if (flags & 0xE0) c.fail("unknown link flags");
  const uint8_t type = (flags & 0x08) ? c.u8("link type") : 0;
  if (flags & 0x04) c.skip(8, "creation order");
  if ((flags & 0x10) && c.u8("link name character set") > 1) c.fail("unknown link name character set");
  const uint64_t length = c.uint(1 << (flags & 3), "link name length");
  if (length == 0) c.fail("a link with an empty name");
  const uint8_t* name = c.take(length, "link name");
  Child child;
  child.name = echo(std::string(reinterpret_cast<const char*>(name), static_cast<size_t>(length)));
  if (type == 0) {
    child.address = c.address("hard link address");
    return child;
  }
  if (type == 1) {
    c.skip(c.u16("soft link length"), "soft link value");
    return std::nullopt;
  }
  c.fail("link '" + child.name + "' is " + (type == 64 ? "an external link (to another file)" : "a user-defined link") +
         ", which stride does not follow");
}

// ---- III.E global heap ----

const std::map<unsigned, uint64_t>& Walker::global_heap(uint64_t address, const Place& place, uint64_t referenced_at) {
  if (const auto it = global_heaps_.find(address); it != global_heaps_.end()) return it->second;
  const Place heap_place{place.object, "global heap collection"};
  const uint64_t at = absolute(address, place, referenced_at, "global heap collection");
  count_node(heap_place, at);
  const std::vector<uint8_t> head = read(at, 16, heap_place, "the collection header");
  Cursor h(f_, heap_place, head.data(), head.size(), at);
  if (std::memcmp(h.take(4, "signature"), "GCOL", 4) != 0) h.fail("expected the GCOL signature");
  if (h.u8("version") != 1) h.fail("global heap version is not 1");
  h.skip(3, "reserved");
  const uint64_t size = h.length("collection size");
  if (size < 16 || size == kUndefined || size > static_cast<uint64_t>(limits_.max_heap_bytes))
    h.fail("collection size " + (size == kUndefined ? std::string("undefined") : num(size)) + ", expected 16 to " +
           num(static_cast<uint64_t>(limits_.max_heap_bytes)));
  const std::vector<uint8_t> bytes = read(at, size, heap_place, "the collection");
  // Objects: index (2), reference count (2), reserved (4), size (length), data padded to 8; index 0 is the
  // free space, whose size already counts its header. libhdf5 steps by these sizes without checking that a
  // step advances or stays inside the collection.
  const uint64_t header = 8 + static_cast<uint64_t>(f_.length_size);
  std::map<unsigned, uint64_t> objects;
  Cursor c(f_, heap_place, bytes.data() + 16, bytes.size() - 16, at + 16);
  while (c.left() >= header) {
    const uint64_t object_at = c.at();
    const size_t left = c.left();
    const unsigned index = c.u16("object index");
    c.skip(6, "reference count and reserved");
    const uint64_t object = c.length("object size");
    const uint64_t need = index > 0 ? (object > size ? kUndefined : header + padded8(object)) : object;
    if (need == 0 || need == kUndefined || need > left)
      refuse(f_, heap_place, object_at, "object " + num(index) + " of " + num(object) + " bytes does not fit in the collection");
    if (index > 0 && !objects.emplace(index, object).second)
      refuse(f_, heap_place, object_at, "object " + num(index) + " appears twice");
    c.skip(need - header > c.left() ? c.left() : need - header, "object data");
  }
  return global_heaps_[address] = std::move(objects);
}

// ---- III.D local heap ----

const LocalHeap& Walker::local_heap(uint64_t address, const Place& place, uint64_t referenced_at) {
  if (const auto it = local_heaps_.find(address); it != local_heaps_.end()) return it->second;
  const Place heap_place{place.object, "local heap"};
  const uint64_t at = absolute(address, place, referenced_at, "local heap");
  count_node(heap_place, at);
  const uint64_t header = 8 + 2 * static_cast<uint64_t>(f_.length_size) + static_cast<uint64_t>(f_.offset_size);
  const std::vector<uint8_t> head = read(at, header, heap_place, "the heap header");
  Cursor h(f_, heap_place, head.data(), head.size(), at);
  if (std::memcmp(h.take(4, "signature"), "HEAP", 4) != 0) h.fail("expected the HEAP signature");
  if (h.u8("version") != 0) h.fail("local heap version is not 0");
  h.skip(3, "reserved");
  const uint64_t size = h.length("data segment size");
  uint64_t free_block = h.length("offset to the free list");
  const uint64_t data = h.address("data segment address");
  if (size == 0 || size == kUndefined || size > static_cast<uint64_t>(limits_.max_heap_bytes))
    h.fail("data segment size " + (size == kUndefined ? std::string("undefined") : num(size)) + ", expected 1 to " +
           num(static_cast<uint64_t>(limits_.max_heap_bytes)));
  LocalHeap heap;
  heap.data_at = absolute(data, heap_place, at, "heap data segment");
  heap.data = read(heap.data_at, size, heap_place, "the heap data segment");
  // The free list: blocks of (offset of the next block, size). libhdf5 follows it without a bound, so a
  // cycle would never end; 1 (its own marker) and the undefined value both end it.
  std::set<uint64_t> seen;
  const uint64_t entry = 2 * static_cast<uint64_t>(f_.length_size);
  while (free_block != 1 && free_block != kUndefined) {
    if (free_block >= size || entry > size - free_block || !seen.insert(free_block).second)
      refuse(f_, heap_place, at, "its free list reaches offset " + num(free_block) +
                                     (seen.count(free_block) ? " twice (a cycle)" : ", outside the data segment"));
    Cursor b(f_, heap_place, heap.data.data() + free_block, static_cast<size_t>(entry), heap.data_at + free_block);
    const uint64_t next = b.length("next free block");
    const uint64_t block = b.length("free block size");
    if (next == 0 || block == kUndefined || block > size - free_block)
      b.fail("free block of " + num(block) + " bytes, next at " + num(next));
    free_block = next;
  }
  return local_heaps_[address] = std::move(heap);
}

std::string Walker::heap_name(const LocalHeap& heap, uint64_t offset, const Place& place, uint64_t referenced_at) const {
  if (offset >= heap.data.size())
    refuse(f_, place, referenced_at, "name offset " + num(offset) + " lies outside its " + num(heap.data.size()) +
                                         "-byte local heap");
  const uint8_t* p = heap.data.data() + offset;
  const void* nul = std::memchr(p, 0, heap.data.size() - static_cast<size_t>(offset));
  if (!nul) refuse(f_, place, referenced_at, "the name at heap offset " + num(offset) + " has no terminating NUL");
  return echo(std::string(reinterpret_cast<const char*>(p), static_cast<const uint8_t*>(nul) - p));
}

// ---- III.A.1 version 1 B-trees (node type 0: group symbol nodes) and III.C symbol table nodes ----

void Walker::walk_group_btree(uint64_t address, int expected_level, const LocalHeap& heap, const Place& place,
                              uint64_t referenced_at, std::vector<Child>& out) {
  const Place node_place{place.object, "group B-tree node"};
  const uint64_t at = absolute(address, place, referenced_at, "group B-tree node");
  if (!nodes_seen_.insert(at).second) refuse(f_, node_place, at, "a node reached twice (a cycle or shared subtree)");
  count_node(node_place, at);
  const uint64_t two_k = 2 * uint64_t{group_internal_k_};
  const uint64_t so = static_cast<uint64_t>(f_.offset_size), sl = static_cast<uint64_t>(f_.length_size);
  const std::vector<uint8_t> node = read(at, 8 + 2 * so + (two_k + 1) * sl + two_k * so, node_place, "the node");
  Cursor c(f_, node_place, node.data(), node.size(), at);
  const auto [level, used] = read_btree_node_header(c, 0, expected_level, two_k);
  for (uint64_t i = 0; i <= used; ++i) {
    const uint64_t key_at = c.at();
    heap_name(heap, c.length("key (name offset)"), node_place, key_at);
    if (i == used) break;
    const uint64_t child = c.address("child address");
    if (level > 0)
      walk_group_btree(child, level - 1, heap, node_place, key_at, out);
    else
      read_symbol_node(child, heap, node_place, key_at, out);
  }
}

void Walker::read_symbol_node(uint64_t address, const LocalHeap& heap, const Place& place, uint64_t referenced_at,
                              std::vector<Child>& out) {
  const Place node_place{place.object, "symbol table node"};
  const uint64_t at = absolute(address, place, referenced_at, "symbol table node");
  if (!nodes_seen_.insert(at).second) refuse(f_, node_place, at, "a node reached twice");
  count_node(node_place, at);
  const uint64_t so = static_cast<uint64_t>(f_.offset_size), sl = static_cast<uint64_t>(f_.length_size);
  const uint64_t entry = sl + so + 24;
  const uint64_t capacity = 2 * uint64_t{group_leaf_k_};
  const std::vector<uint8_t> node = read(at, 8 + capacity * entry, node_place, "the node");
  Cursor c(f_, node_place, node.data(), node.size(), at);
  if (std::memcmp(c.take(4, "signature"), "SNOD", 4) != 0) c.fail("expected the SNOD signature");
  if (c.u8("version") != 1) c.fail("symbol table node version is not 1");
  c.skip(1, "reserved");
  const uint64_t symbols = c.u16("number of symbols");
  if (symbols > capacity) c.fail(num(symbols) + " symbols in a node of " + num(capacity));
  for (uint64_t i = 0; i < symbols; ++i) {
    const uint64_t entry_at = c.at();
    Child child;
    child.name = heap_name(heap, c.length("link name offset"), node_place, entry_at);
    child.address = c.address("object header address");
    const uint32_t cache = c.u32("cache type");
    c.skip(4, "reserved");
    if (cache == 2) {
      Cursor scratch = c.sub(16, "scratch pad");
      heap_name(heap, scratch.u32("soft link value offset"), node_place, entry_at);
      continue;  // a soft link names a path, which libhdf5 resolves through the walked groups
    }
    if (cache > 2) refuse(f_, node_place, entry_at, "cache type " + num(cache) + ", expected 0 to 2");
    c.skip(16, "scratch pad");
    out.push_back(std::move(child));
  }
}

// ---- objects ----

void Walker::walk_object(uint64_t root_address, const std::string& root_name, bool root) {
  // Depth first with an explicit stack: paths, not recursion, grow with the file's nesting.
  std::vector<std::pair<uint64_t, std::string>> pending{{root_address, root_name}};
  bool is_root = root;
  while (!pending.empty()) {
    const auto [address, object] = std::move(pending.back());
    pending.pop_back();
    const uint64_t header_at = absolute(address, {object, "link"}, address, "object header");
    if (!headers_done_.insert(header_at).second) continue;  // hard links may reach an object twice
    std::optional<Dataspace> space;
    std::optional<Datatype> type;
    std::optional<Layout> layout;
    std::optional<Fill> fill;
    std::vector<Filter> filters;
    bool has_pipeline = false, has_stab = false, has_links = false;
    uint64_t stab_btree = kUndefined, stab_heap = kUndefined, stab_at = 0;
    std::vector<Child> children;
    for (const Message& m : read_header(address, object)) {
      Cursor c(f_, {object, "message type " + num(m.type)}, m.data.data(), m.data.size(), m.at);
      auto once = [&](bool seen, const char* what) {
        if (seen) c.fail(std::string("a second ") + what + " message");
      };
      switch (m.type) {
        case 0x00: case 0x0E: case 0x12: case 0x16: break;  // null, modification times, reference count
        case 0x01: once(space.has_value(), "dataspace"); space = parse_dataspace(c); break;
        case 0x02: {  // link info: dense storage lives in a fractal heap
          if (c.u8("link info version") != 0) c.fail("link info version is not 0");
          const uint8_t flags = c.u8("link info flags");
          if (flags & 1) c.skip(8, "maximum creation index");
          if (c.address("fractal heap address") != kUndefined)
            c.fail("links in dense storage (a fractal heap, HDF5 1.8+ with many links), which stride does not read");
          has_links = true;
          break;
        }
        case 0x03: once(type.has_value(), "datatype"); type = parse_datatype(c, 0); break;
        case 0x04: if (!fill) fill = parse_fill(c, /*old=*/true); break;
        case 0x05: fill = parse_fill(c, /*old=*/false); break;
        case 0x06:
          if (auto child = parse_link(c)) children.push_back(std::move(*child));
          has_links = true;
          break;
        case 0x07: c.fail("data stored in external files, which stride does not read");
        case 0x08: once(layout.has_value(), "data layout"); layout = parse_layout(c); break;
        case 0x0A: break;  // group info: sizing hints for writers
        case 0x0B: once(has_pipeline, "filter pipeline"); filters = parse_pipeline(c); has_pipeline = true; break;
        case 0x0C: parse_attribute(c); break;
        case 0x0D: c.cstring(c.left(), "comment"); break;
        case 0x10: break;  // continuation: followed by read_header
        case 0x11:
          once(has_stab, "symbol table");
          stab_btree = c.address("B-tree address");
          stab_heap = c.address("local heap address");
          stab_at = m.at;
          has_stab = true;
          break;
        case 0x15: {  // attribute info: dense attributes live in a fractal heap
          if (c.u8("attribute info version") != 0) c.fail("attribute info version is not 0");
          const uint8_t flags = c.u8("attribute info flags");
          if (flags & 1) c.skip(2, "maximum creation index");
          if (c.address("fractal heap address") != kUndefined)
            c.fail("attributes in dense storage (a fractal heap), which stride does not read");
          break;
        }
        default:
          c.fail("message type " + num(m.type) + ", which does not belong in an object header stride reads");
      }
    }
    const Place place{object, "object header"};
    const bool group = has_stab || has_links;
    const bool dataset = layout.has_value();
    if (group && dataset) refuse(f_, place, header_at, "both a group and a dataset");
    if (is_root && !group) refuse(f_, place, header_at, "the root object is not a group");
    if (is_root && root_cached_btree_ != kUndefined &&
        (root_cached_btree_ != stab_btree || root_cached_heap_ != stab_heap))
      refuse(f_, place, header_at, "the superblock's cached symbol table differs from the root group's");
    is_root = false;
    if (dataset) {
      if (!space || !type) refuse(f_, place, header_at, "a dataset without a dataspace or a datatype");
      check_dataset(place, header_at, *space, *type, *layout, filters, fill);
    }
    if (has_stab) {
      const LocalHeap& heap = local_heap(stab_heap, {object, "symbol table"}, stab_at);
      walk_group_btree(stab_btree, -1, heap, {object, "symbol table"}, stab_at, children);
    }
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      pending.emplace_back(it->address, (object == "/" ? "" : object) + "/" + it->name);
  }
}

// ---- datasets ----

void Walker::check_dataset(const Place& place, uint64_t header_at, const Dataspace& space, const Datatype& type,
                           const Layout& layout, const std::vector<Filter>& filters, const std::optional<Fill>& fill) {
  if (fill && fill->has_value && fill->size != type.size)
    refuse(f_, place, header_at, "a fill value of " + num(fill->size) + " bytes for elements of " + num(type.size));
  const auto total = mul(space.points, type.size);
  if (!total) refuse(f_, place, header_at, num(space.points) + " elements of " + num(type.size) + " bytes overflow");
  if (layout.cls != 2 && !filters.empty()) refuse(f_, place, header_at, "filters on a dataset that is not chunked");
  if (layout.cls == 0) {
    if (layout.compact_size != *total)
      refuse(f_, place, header_at, "compact data of " + num(layout.compact_size) + " bytes for " + num(*total));
    return;
  }
  if (layout.cls == 1) {
    if (layout.address == kUndefined) return;  // never written: check_stored refuses it where data is read
    if (layout.size != *total)
      refuse(f_, place, header_at, "contiguous data of " + num(layout.size) + " bytes for " + num(*total));
    const uint64_t at = absolute(layout.address, place, header_at, "contiguous data");
    if (layout.size > end_ - at)
      refuse(f_, place, header_at, "its " + num(layout.size) + " bytes at byte " + num(at) + " run past the end of the file");
    return;
  }
  // Chunked: the chunk shape against the dataspace, then every chunk the index holds.
  if (space.kind != Dataspace::Kind::simple || layout.chunk_rank != space.rank)
    refuse(f_, place, header_at, "chunks of rank " + num(static_cast<uint64_t>(layout.chunk_rank)) +
                                     " for a dataspace of rank " + num(static_cast<uint64_t>(space.rank)));
  if (layout.element_size != type.size)
    refuse(f_, place, header_at, "chunk elements of " + num(layout.element_size) + " bytes for a type of " + num(type.size));
  uint64_t chunk_bytes = type.size, chunks = 1;
  std::array<uint64_t, kMaxRank> grid{};
  for (int i = 0; i < space.rank; ++i) {
    grid[i] = (space.dims[i] + layout.chunk[i] - 1) / layout.chunk[i];
    const auto b = mul(chunk_bytes, layout.chunk[i]);
    const auto n = mul(chunks, grid[i]);
    if (!b || !n) refuse(f_, place, header_at, "the chunk size or count overflows");
    chunk_bytes = *b;
    chunks = *n;
  }
  if (chunk_bytes > static_cast<uint64_t>(limits_.max_chunk_bytes))
    refuse(f_, place, header_at, "chunks of " + num(chunk_bytes) + " bytes (the limit is " +
                                     num(static_cast<uint64_t>(limits_.max_chunk_bytes)) + ")");
  for (const Filter& f : filters)
    if (f.id == 2 && f.values[0] != type.size)
      refuse(f_, place, header_at, "shuffle for elements of " + num(f.values[0]) + " bytes in a type of " + num(type.size));
  if (layout.address == kUndefined) return;  // no chunk written yet
  const ChunkVisitor visit = [&](const ChunkRecord& r) {
    if (r.address == kUndefined) return;  // an unwritten chunk: check_stored counts them where data is read
    count_node(place, header_at);
    check_chunk(r, space, layout, filters, chunk_bytes, place);
  };
  switch (layout.index) {
    case 0:
      last_chunk_.reset();
      walk_chunk_btree(layout.address, -1, layout, place, header_at, visit);
      break;
    case 1: {  // one chunk covering the dataset, at the index address
      for (int i = 0; i < space.rank; ++i)
        if (layout.chunk[i] < space.dims[i])
          refuse(f_, place, header_at, "a single-chunk index whose chunk is smaller than the dataset");
      ChunkRecord r;
      r.address = layout.address;
      r.stored = layout.single_filtered ? layout.single_size : chunk_bytes;
      r.filter_mask = layout.single_mask;
      visit(r);
      break;
    }
    case 2: {  // implicit: every chunk, unfiltered, one after another from the index address
      if (!filters.empty()) refuse(f_, place, header_at, "an implicit chunk index with filters");
      const auto all = mul(chunks, chunk_bytes);
      const uint64_t at = absolute(layout.address, place, header_at, "implicit chunk index");
      if (!all || *all > end_ - at)
        refuse(f_, place, header_at, "its " + num(chunks) + " chunks run past the end of the file");
      break;
    }
    case 3: walk_fixed_array(layout, grid, chunks, chunk_bytes, !filters.empty(), place, header_at, visit); break;
  }
}

void Walker::walk_chunk_btree(uint64_t address, int expected_level, const Layout& layout, const Place& place,
                              uint64_t referenced_at, const ChunkVisitor& visit) {  // III.A.1, node type 1
  const Place node_place{place.object, "chunk B-tree node"};
  const uint64_t at = absolute(address, place, referenced_at, "chunk B-tree node");
  if (!nodes_seen_.insert(at).second) refuse(f_, node_place, at, "a node reached twice (a cycle or shared subtree)");
  count_node(node_place, at);
  const uint64_t two_k = 2 * uint64_t{chunk_k_};
  const uint64_t so = static_cast<uint64_t>(f_.offset_size);
  const int rank = layout.chunk_rank;
  const uint64_t key = 8 + 8 * (static_cast<uint64_t>(rank) + 1);
  const std::vector<uint8_t> node = read(at, 8 + 2 * so + (two_k + 1) * key + two_k * so, node_place, "the node");
  Cursor c(f_, node_place, node.data(), node.size(), at);
  const auto [level, used] = read_btree_node_header(c, 1, expected_level, two_k);
  for (uint64_t i = 0; i < used; ++i) {
    const uint64_t key_at = c.at();
    ChunkRecord r;
    r.stored = c.u32("chunk size");
    r.filter_mask = c.u32("filter mask");
    for (int d = 0; d < rank; ++d) r.offset[d] = c.uint(8, "chunk offset");
    if (const uint64_t element = c.uint(8, "element offset"); element != 0)
      c.fail("a chunk key whose element offset is " + num(element) + ", expected 0");
    const uint64_t child = c.address("child address");
    if (level > 0) {
      walk_chunk_btree(child, level - 1, layout, node_place, key_at, visit);
      continue;
    }
    // In key order every chunk follows the one before: a sorted index holds each chunk once.
    if (last_chunk_ && !std::lexicographical_compare(last_chunk_->begin(), last_chunk_->begin() + rank,
                                                     r.offset.begin(), r.offset.begin() + rank))
      refuse(f_, node_place, key_at, "chunk keys out of order (a duplicate or unsorted chunk)");
    last_chunk_ = r.offset;
    r.address = child;
    visit(r);
  }
}

void Walker::walk_fixed_array(const Layout& layout, const std::array<uint64_t, kMaxRank>& grid, uint64_t chunks,
                              uint64_t chunk_bytes, bool filtered, const Place& place, uint64_t referenced_at,
                              const ChunkVisitor& visit) {
  // Appendix C, fixed array index: a header (FAHD), then a data block (FADB) of one entry per chunk in row-major
  // order of the chunk grid; above 2^page_bits entries the entries sit in pages after the block, each page
  // followed by its checksum.
  const Place head_place{place.object, "fixed array header"};
  const uint64_t at = absolute(layout.address, place, referenced_at, "fixed array header");
  count_node(head_place, at);
  const uint64_t so = static_cast<uint64_t>(f_.offset_size), sl = static_cast<uint64_t>(f_.length_size);
  const std::vector<uint8_t> head = read(at, 12 + so + sl, head_place, "the header");
  Cursor h(f_, head_place, head.data(), head.size(), at);
  if (std::memcmp(h.take(4, "signature"), "FAHD", 4) != 0) h.fail("expected the FAHD signature");
  if (h.u8("version") != 0) h.fail("fixed array version is not 0");
  const uint8_t client = h.u8("client id");
  const uint64_t entry = h.u8("entry size");
  const int page_bits = h.u8("page bits");
  const uint64_t entries = h.length("number of entries");
  const uint64_t block = h.address("data block address");
  if (lookup3(head.data(), h.pos()) != h.u32("checksum")) h.fail("checksum mismatch (a corrupt fixed array header)");
  if (client != (filtered ? 1 : 0))
    h.fail("client id " + num(client) + ", expected " + (filtered ? "1 (filtered chunks)" : "0 (unfiltered chunks)"));
  if (client == 0 ? entry != so : (entry < so + 5 || entry > so + 12)) h.fail("entry size " + num(entry));
  if (entries != chunks) h.fail(num(entries) + " entries for a dataset of " + num(chunks) + " chunks");
  if (page_bits != layout.page_bits) h.fail("page bits differ from the layout message's");
  if (block == kUndefined) return;
  const Place block_place{place.object, "fixed array data block"};
  const uint64_t b_at = absolute(block, head_place, at, "fixed array data block");
  const uint64_t page = uint64_t{1} << page_bits;
  const bool paged = entries > page;
  const uint64_t pages = (entries + page - 1) / page;
  const uint64_t bitmap = paged ? (pages + 7) / 8 : 0;
  const auto body = mul(entries, entry);
  if (!body) refuse(f_, block_place, b_at, "its entries overflow");
  const uint64_t total = 6 + so + bitmap + 4 + *body + (paged ? 4 * pages : 0);
  const std::vector<uint8_t> bytes = read(b_at, total, block_place, "the data block and its pages");
  Cursor c(f_, block_place, bytes.data(), bytes.size(), b_at);
  if (std::memcmp(c.take(4, "signature"), "FADB", 4) != 0) c.fail("expected the FADB signature");
  if (c.u8("version") != 0) c.fail("data block version is not 0");
  if (c.u8("client id") != client) c.fail("client id differs from the header's");
  if (c.address("header address") != layout.address) c.fail("header address differs from the index's");
  c.skip(bitmap, "page bitmap");
  size_t checked_from = 0;
  auto checksum = [&] {
    const size_t covered_to = c.pos();
    if (lookup3(bytes.data() + checked_from, covered_to - checked_from) != c.u32("checksum")) c.fail("checksum mismatch");
    checked_from = c.pos();
  };
  if (paged) checksum();
  const int size_width = static_cast<int>(entry - so - 4);
  for (uint64_t i = 0; i < entries; ++i) {
    ChunkRecord r;
    r.address = c.address("chunk address");
    r.stored = chunk_bytes;
    if (client == 1) {
      r.stored = c.uint(size_width, "chunk size");
      r.filter_mask = c.u32("filter mask");
    }
    uint64_t rest = i;
    for (int d = layout.chunk_rank - 1; d >= 0; --d) {
      r.offset[d] = (rest % grid[d]) * layout.chunk[d];
      rest /= grid[d];
    }
    visit(r);
    if (paged && ((i + 1) % page == 0 || i + 1 == entries)) checksum();
  }
  if (!paged) checksum();
}

void Walker::check_chunk(const ChunkRecord& r, const Dataspace& space, const Layout& layout,
                         const std::vector<Filter>& filters, uint64_t chunk_bytes, const Place& dataset) {
  std::string coords;
  bool partial = false;
  for (int d = 0; d < space.rank; ++d) {
    coords += (d ? ", " : "") + num(r.offset[d]);
    partial = partial || r.offset[d] + layout.chunk[d] > space.dims[d];
  }
  const Place place{dataset.object, "chunk (" + coords + ")"};
  const uint64_t at = absolute(r.address, place, r.address, "chunk");
  for (int d = 0; d < space.rank; ++d) {
    const uint64_t extent = space.maxdims[d] == kUndefined ? kMaxDimension : space.maxdims[d];
    if (r.offset[d] % layout.chunk[d] != 0 || r.offset[d] >= std::max<uint64_t>(extent, 1))
      refuse(f_, place, at, "its offset is not a chunk position inside the dataset's extent");
  }
  const uint64_t stored = r.stored;
  if (stored == 0 || stored > end_ - at)
    refuse(f_, place, at, "its " + num(stored) + " stored bytes run past the end of the file");
  // The filters this chunk went through when it was written, in that order (a set mask bit skipped one).
  std::vector<uint16_t> applied;
  if (!(layout.unfiltered_edges && partial))
    for (size_t i = 0; i < filters.size(); ++i)
      if (!((r.filter_mask >> i) & 1)) applied.push_back(filters[i].id);
  // Reading undoes them last to first. Only sizes matter: fletcher32 drops its 4-byte checksum, shuffle keeps
  // the size, and deflate's output is measured by inflating with a cap. What comes out must be exactly one
  // chunk, or libhdf5 would copy a chunk's worth from a shorter buffer.
  uint64_t size = stored;
  bool transformed = false;  // whether the bytes deflate would see differ from the stored ones
  for (auto it = applied.rbegin(); it != applied.rend(); ++it) {
    if (*it == 3) {
      if (size < 4) refuse(f_, place, at, "a fletcher32 chunk of " + num(size) + " bytes, shorter than its checksum");
      size -= 4;
    } else if (*it == 2) {
      transformed = true;
    } else if (*it == 1) {
      if (transformed) refuse(f_, place, at, "shuffle applied after deflate, which stride does not read");
      size = inflated_size(at, size, chunk_bytes + 4, place);
      transformed = true;
    }
  }
  if (size != chunk_bytes)
    refuse(f_, place, at, "it decodes to " + num(size) + " bytes, expected a chunk of " + num(chunk_bytes));
}

uint64_t Walker::inflated_size(uint64_t at, uint64_t n, uint64_t cap, const Place& place) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw IoError(f_.path + ": zlib could not start");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};
  uint64_t produced = 0;
  std::vector<uint8_t> out(64 << 10);
  int rc = Z_OK;
  for (uint64_t done = 0; done < n && rc != Z_STREAM_END;) {
    const uint64_t take = std::min<uint64_t>(n - done, 1 << 20);
    std::vector<uint8_t> in = read(at + done, take, place, "chunk data", /*metadata=*/false);
    done += take;
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(in.size());
    do {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
        refuse(f_, place, at, "its deflate data is corrupt (zlib: " + std::string(z.msg ? z.msg : "error") + ")");
      produced += out.size() - z.avail_out;
      if (produced > cap) refuse(f_, place, at, "it inflates to more than the " + num(cap) + " bytes of a chunk");
    } while (rc != Z_STREAM_END && (z.avail_in > 0 || z.avail_out == 0));
  }
  if (rc != Z_STREAM_END) refuse(f_, place, at, "its deflate data ends early");
  return produced;
}

// ---- the file ----

void Walker::run() {
  fd_ = ::open(f_.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw IoError(f_.path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) throw IoError(f_.path + ": not a regular file");
  file_size_ = static_cast<uint64_t>(st.st_size);
  // II.A: the signature sits at byte 0, 512, 1024, 2048, ... (a user block may come first).
  for (uint64_t at = 0; at < file_size_ && file_size_ - at >= 8; at = at ? at * 2 : 512) {
    char signature[8];
    if (::pread(fd_, signature, 8, static_cast<off_t>(at)) != 8) break;
    if (std::memcmp(signature, kSignature, 8) == 0) {
      read_superblock(at);
      return;
    }
  }
  throw IoError(f_.path + ": not an HDF5 file: no HDF5 signature at byte 0, 512, 1024, ... (truncated or corrupt?)");
}

}  // namespace

void check_structure(const std::string& path, const StructureLimits& limits) {
  Walker walker(path, limits);
  walker.run();
}

}  // namespace stride::h5
