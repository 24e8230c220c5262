#pragma once
// The checkpoints of a run directory:
//   RUN_DIR/checkpoints/step-000000123.h5   one full checkpoint per save, named by the global step
//   RUN_DIR/checkpoints/latest              a one-line text file naming the newest good checkpoint
//   RUN_DIR/final.h5                        the full checkpoint written when a run ends
// Every file is written to a temporary in the same directory and renamed, so a crash leaves either the old
// or the new file, never a partial one; the newest K checkpoints are kept.
#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.hpp"

namespace stride {

// "step-000000123.h5" (nine digits, so names sort by step).
std::string checkpoint_file_name(int64_t step);

// Writes `text` to `path` atomically (temporary + fsync + rename + directory fsync); throws IoError.
void write_text_atomically(const std::string& path, const std::string& text);

class CheckpointDir {
 public:
  explicit CheckpointDir(std::string run_dir);

  const std::string& run_dir() const { return run_dir_; }
  std::string dir() const;  // RUN_DIR/checkpoints

  // Writes ckpt as step-<ckpt.step>.h5, points `latest` at it, then deletes all but the newest `keep`
  // step files (keep >= 1) and stale temporaries of killed writers. Returns the path written. A failed write
  // throws IoError and leaves every earlier checkpoint and `latest` as they were.
  std::string save(const Checkpoint& ckpt, int64_t keep) const;

  // Every step-*.h5 present, newest (highest step) first.
  std::vector<std::string> list() const;
  // The file `latest` names (empty when there is none).
  std::string latest() const;

 private:
  std::string run_dir_;
};

struct ResumePoint {
  std::string path;  // the checkpoint used
  Checkpoint checkpoint;
  std::string run_dir;  // the run directory it belongs to (RUN_DIR for RUN_DIR/checkpoints/*.h5 and RUN_DIR/final.h5)
  std::vector<std::string> warnings;  // newer checkpoints that could not be read, and why
};

// `where` is a run directory or one checkpoint file.
//  - A file: read and validated; any problem throws IoError (no fallback: the user named that file).
//  - A directory: its checkpoints/step-*.h5 newest first; the first that reads cleanly is used and each newer
//    one that did not is reported in `warnings`. RUN_DIR/final.h5 is used when it is newer than every step
//    file (a finished run being extended). Throws IoError when nothing usable is found.
ResumePoint find_resume_point(const std::string& where);

}  // namespace stride
