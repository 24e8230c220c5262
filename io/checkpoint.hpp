#pragma once
// HDF5 checkpoints (layout in docs/checkpoint.md). A checkpoint holds everything a run needs to continue
// bit-identically: parameters, batch-norm state, optimizer slots, the position (epoch, step), the seed, the
// model spec and the input normalization. Files are written to a temporary name, fsynced and renamed, so a
// crash or a full disk never replaces a good checkpoint with a partial one.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "framework/core/shape.hpp"

namespace stride {

inline constexpr const char* kCheckpointFormat = "stride-checkpoint";
// Version 2 added /progress (mid-epoch metrics accumulators) and the full run config; version-1 files
// (weights and optimizer only) still load for eval, predict and --init, but cannot be resumed.
inline constexpr int64_t kCheckpointVersion = 2;
inline constexpr int64_t kOldestReadableCheckpointVersion = 1;
// A weights-only file (docs/checkpoint.md, "Weights in and out"): /params plus, optionally, /normalization,
// class_names and model_spec; what scripts/torch_to_stride.py writes.
inline constexpr const char* kWeightsFormat = "stride-weights";
inline constexpr int64_t kWeightsVersion = 1;

struct StoredArray {
  Shape shape;
  std::vector<float> values;
};

// Running sums of the epoch in progress, so the metrics lines logged after a mid-epoch resume equal the
// uninterrupted run's. Stored as attributes of /progress.
struct TrainingProgress {
  double epoch_loss_sum = 0;   // sum of the step losses of this epoch so far, in step order
  int64_t epoch_correct = 0;   // training predictions right so far this epoch
  double window_loss_sum = 0;  // the same since the last metrics line
  int64_t window_correct = 0, window_count = 0, window_steps = 0;
  double test_accuracy = 0, test_loss = 0;  // of the last completed epoch (0 before the first)
  double next_lr = 0;          // lr_at(schedule, step): informational, the schedule is a function of step
};

struct Checkpoint {
  // Root attributes.
  int64_t version = kCheckpointVersion;
  std::string stride_version;
  int64_t epoch = 0;         // epochs completed before `step`'s epoch began (the epoch in progress)
  int64_t step = 0;          // global iteration count (optimizer steps taken)
  int64_t samples_seen = 0;  // within the current epoch
  uint64_t seed = 0;
  double wall_time = 0;      // seconds of training so far
  std::string model_spec;    // the JSON spec text
  std::string run_config;    // JSON of the training settings (optimizer, schedule, batch, ...)
  bool has_progress = false;  // false for version-1 files
  TrainingProgress progress;
  std::vector<float> norm_mean, norm_std;
  std::vector<std::string> class_names;
  // /params/<layer>/<param> (learnable and state), /optimizer/<layer>/<param>/<slot>.
  std::map<std::string, StoredArray> params;
  std::string optimizer_kind;  // empty when the file has no optimizer state
  int64_t optimizer_steps = 0;
  std::map<std::string, StoredArray> optimizer;  // key "<layer>/<param>/<slot>"
};

// Writes atomically: PATH.tmp.<pid> in the same directory, flushed and fsynced, renamed over PATH, and the
// directory fsynced. On any failure the temporary is removed, PATH is untouched, and IoError says why.
void write_checkpoint(const std::string& path, const Checkpoint& ckpt);

// Reads and validates (format, version, checksums via HDF5's Fletcher32 filter, shapes). Throws IoError
// naming the file and what is wrong.
Checkpoint read_checkpoint(const std::string& path);

// The weights of a checkpoint or of a weights-only file, for --init, eval and predict. A checkpoint is read
// whole (read_checkpoint); a weights-only file (format "stride-weights", or no format attribute at all, as a
// hand-made h5py file has) fills params and, when present, norm_mean/norm_std, class_names and model_spec;
// its version is 0 and it has no optimizer or progress. Throws IoError naming the file and what is wrong.
Checkpoint read_weights(const std::string& path);

// Where the stored bytes of one dataset (e.g. "/params/conv1/weight") begin in the file and how many there
// are (its first chunk); for tests that corrupt a dataset's data on purpose.
struct StoredBytes {
  uint64_t offset = 0, size = 0;
};
StoredBytes locate_dataset_bytes(const std::string& path, const std::string& dataset);

}  // namespace stride
