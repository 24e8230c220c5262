#pragma once
// The defence of io/ against crafted HDF5 files, in this process and before libhdf5 touches the file.
//
// Debian's libhdf5 (1.10.8) trusts the sizes, counts and addresses it decodes: a crafted file makes it read out
// of bounds, allocate gigabytes or loop forever (fuzz/fuzz_checkpoint.cpp and fuzz_hdf5_dataset.cpp found
// several). check_structure() walks everything libhdf5 would decode when stride opens and reads the file,
// with bounded reads of its own, and refuses anything malformed, outside the file, or beyond the limits below:
//   - the superblock (versions 0-3) and its extension;
//   - every object header reachable from the root (versions 1 and 2, every continuation chunk), and every
//     message in it: dataspaces, datatypes (recursively), fill values, layouts, filter pipelines, attributes
//     (their data, and the global heap objects their variable-length strings point to), links;
//   - groups: symbol-table B-trees, symbol nodes and local heaps (names, free lists); compact link messages;
//   - datasets: contiguous and compact storage against the file, and every chunk of a chunked dataset through
//     its index (version 1 B-tree, single chunk, implicit, fixed array), with its filter pipeline replayed on
//     sizes, deflate inflated with a cap, so no chunk decodes to anything but its exact size.
// What it does not read it refuses by name rather than guess: dense (fractal heap) link and attribute storage,
// shared or committed messages, extensible-array and version 2 B-tree chunk indexes, external, virtual and
// multi-file storage, filters other than deflate, shuffle and fletcher32. docs/reliability.md lists them, and
// how to write such a file instead (h5py with its default libver).
//
// Nothing here forks, uses threads or depends on time: the work is bounded by bytes and objects, so a slow
// file system makes it slower, never wrong, and it runs the same inside an MPI job.
#include <cstdint>
#include <string>

namespace stride::h5 {

struct StructureLimits {
  int64_t max_objects = 100'000;                     // object headers (groups, datasets, named types)
  int64_t max_nodes = 4'000'000;                     // B-tree and symbol nodes, chunks, heap collections
  int64_t max_metadata_bytes = int64_t{1} << 30;     // bytes of metadata the walk reads
  int64_t max_heap_bytes = int64_t{64} << 20;        // one local heap segment or global heap collection
  int64_t max_chunk_bytes = int64_t{256} << 20;      // one decoded chunk (libhdf5 allocates it whole)
  int64_t max_element_bytes = int64_t{1} << 20;      // one datatype's element size
};

// Throws IoError "<path>: <object>: <structure> at byte <offset>: <what is wrong>" (the object is its path
// from the root, e.g. /params/conv1/weight) unless the whole file passes.
void check_structure(const std::string& path, const StructureLimits& limits = {});

}  // namespace stride::h5
