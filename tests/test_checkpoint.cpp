// The checkpoint file (io/checkpoint) and the run directory's checkpoints (io/checkpoint_dir): round trip of
// every field, corruption (truncation, flipped data bytes caught by Fletcher32, wrong version), the fallback
// to an older checkpoint, and a write that fails on a full disk (RLIMIT_FSIZE) without harming the old one.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "io/checkpoint.hpp"
#include "io/checkpoint_dir.hpp"
#include "tests/expect_error.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
using stride::test::io_error;
namespace fs = std::filesystem;

namespace {

struct CkptTempDir : test::TempDir {
  CkptTempDir() : TempDir("ckpt") {}
};

StoredArray ramp(Shape shape, float start) {
  StoredArray a{shape, {}};
  for (int64_t i = 0; i < shape.numel(); ++i) a.values.push_back(start + 0.25f * static_cast<float>(i));
  return a;
}

// A checkpoint with every field set to something other than its default.
Checkpoint sample_checkpoint(int64_t step, int64_t weight_elements = 150) {
  Checkpoint c;
  c.stride_version = "0.1.0";
  c.epoch = 2;
  c.step = step;
  c.samples_seen = 48;
  c.seed = 0x1234567890abcdefULL;
  c.wall_time = 12.5;
  c.model_spec = R"({"name":"t","layers":[]})";
  c.run_config = R"({"batch":16})";
  c.norm_mean = {0.1f, 0.2f, 0.3f};
  c.norm_std = {1.5f, 2.5f, 3.5f};
  c.class_names = {"cat", "dög", "ship"};
  c.params["conv1/weight"] = ramp(Shape{weight_elements / 75, 3, 5, 5}, -1.0f);
  c.params["conv1/bias"] = ramp(Shape{2}, 7.0f);
  c.params["bn1/running_var"] = ramp(Shape{2}, 0.5f);
  c.optimizer_kind = "adam";
  c.optimizer_steps = step;
  c.optimizer["conv1/weight/exp_avg"] = ramp(Shape{weight_elements / 75, 3, 5, 5}, 3.0f);
  c.optimizer["conv1/bias/exp_avg"] = ramp(Shape{2}, -3.0f);
  c.has_progress = true;
  c.progress = TrainingProgress{1.25, 17, 0.75, 5, 32, 2, 0.625, 1.125, 0.001};
  return c;
}

void check_equal(const Checkpoint& a, const Checkpoint& b) {
  CHECK(a.version == b.version);
  CHECK(a.stride_version == b.stride_version);
  CHECK(a.epoch == b.epoch);
  CHECK(a.step == b.step);
  CHECK(a.samples_seen == b.samples_seen);
  CHECK(a.seed == b.seed);
  CHECK(a.wall_time == b.wall_time);
  CHECK(a.model_spec == b.model_spec);
  CHECK(a.run_config == b.run_config);
  CHECK(a.norm_mean == b.norm_mean);
  CHECK(a.norm_std == b.norm_std);
  CHECK(a.class_names == b.class_names);
  CHECK(a.optimizer_kind == b.optimizer_kind);
  CHECK(a.optimizer_steps == b.optimizer_steps);
  CHECK(a.has_progress == b.has_progress);
  CHECK(std::memcmp(&a.progress, &b.progress, sizeof a.progress) == 0);
  REQUIRE(a.params.size() == b.params.size());
  for (const auto& [name, arr] : a.params) {
    REQUIRE(b.params.count(name) == 1);
    CHECK(arr.shape == b.params.at(name).shape);
    CHECK(arr.values == b.params.at(name).values);
  }
  REQUIRE(a.optimizer.size() == b.optimizer.size());
  for (const auto& [name, arr] : a.optimizer) {
    REQUIRE(b.optimizer.count(name) == 1);
    CHECK(arr.shape == b.optimizer.at(name).shape);
    CHECK(arr.values == b.optimizer.at(name).values);
  }
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

bool any_temporaries(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("checkpoint: every attribute, dataset and progress field round-trips exactly") {
  CkptTempDir tmp;
  const Checkpoint c = sample_checkpoint(123);
  write_checkpoint(tmp / "a.h5", c);
  check_equal(c, read_checkpoint(tmp / "a.h5"));
  CHECK_FALSE(any_temporaries(tmp.path));
  // Overwriting an existing file replaces it whole.
  Checkpoint c2 = sample_checkpoint(124);
  c2.params.erase("bn1/running_var");
  write_checkpoint(tmp / "a.h5", c2);
  check_equal(c2, read_checkpoint(tmp / "a.h5"));
}

TEST_CASE("checkpoint: the run directory names files by step, keeps the newest K and points latest at the newest") {
  CkptTempDir tmp;
  CHECK(checkpoint_file_name(123) == "step-000000123.h5");
  CHECK(checkpoint_file_name(0) == "step-000000000.h5");
  const CheckpointDir dir(tmp.path.string());
  for (int64_t step : {5, 10, 15, 20, 25}) {
    const std::string p = dir.save(sample_checkpoint(step), 3);
    CHECK(p == (tmp.path / "checkpoints" / checkpoint_file_name(step)).string());
    CHECK(dir.latest() == p);
  }
  const auto files = dir.list();
  REQUIRE(files.size() == 3);
  CHECK(fs::path(files[0]).filename() == "step-000000025.h5");
  CHECK(fs::path(files[1]).filename() == "step-000000020.h5");
  CHECK(fs::path(files[2]).filename() == "step-000000015.h5");
  std::ifstream latest(tmp.path / "checkpoints" / "latest");
  std::string line;
  std::getline(latest, line);
  CHECK(line == "step-000000025.h5");
  CHECK_FALSE(any_temporaries(tmp.path / "checkpoints"));
  // A stale temporary of a killed writer is swept by the next save.
  std::ofstream(tmp.path / "checkpoints" / "step-000000030.h5.tmp.99999") << "partial";
  dir.save(sample_checkpoint(30), 3);
  CHECK_FALSE(any_temporaries(tmp.path / "checkpoints"));
  const ResumePoint r = find_resume_point(tmp.path.string());
  CHECK(r.path == dir.latest());
  CHECK(r.checkpoint.step == 30);
  CHECK(r.warnings.empty());
  CHECK(r.run_dir == tmp.path.string());
  // A file inside checkpoints/ belongs to the run directory above it.
  CHECK(fs::equivalent(find_resume_point(dir.latest()).run_dir, tmp.path));
  CHECK_THROWS_AS(dir.save(sample_checkpoint(31), 0), ConfigError);
}

TEST_CASE("checkpoint: a truncated file is a clear IoError naming the file") {
  CkptTempDir tmp;
  const std::string path = tmp / "t.h5";
  write_checkpoint(path, sample_checkpoint(7, 75 * 40));
  const auto size = fs::file_size(path);
  for (uintmax_t keep : {size / 2, size - 100, uintmax_t{100}, uintmax_t{0}}) {
    CAPTURE(keep);
    write_checkpoint(path, sample_checkpoint(7, 75 * 40));
    fs::resize_file(path, keep);
    const std::string msg = io_error([&] { read_checkpoint(path); });
    CHECK(msg.find(path) == 0);
    CHECK(msg != "(no IoError)");
  }
}

TEST_CASE("checkpoint: a flipped byte inside a dataset's data fails its Fletcher32 checksum") {
  CkptTempDir tmp;
  const std::string path = tmp / "f.h5";
  for (const char* dataset : {"/params/conv1/weight", "/params/bn1/running_var", "/optimizer/conv1/weight/exp_avg",
                              "/normalization/std"}) {
    CAPTURE(dataset);
    write_checkpoint(path, sample_checkpoint(9));
    REQUIRE_NOTHROW(read_checkpoint(path));
    const StoredBytes where = locate_dataset_bytes(path, dataset);
    REQUIRE(where.size > 4);  // the data plus the 4-byte checksum
    REQUIRE(where.offset + where.size <= fs::file_size(path));
    flip_byte(path, where.offset + (where.size - 4) / 2);
    const std::string msg = io_error([&] { read_checkpoint(path); });
    CHECK(msg.find(path) == 0);
    CHECK(msg.find(dataset) != std::string::npos);
    CHECK(msg.find("checksum") != std::string::npos);
  }
}

TEST_CASE("checkpoint: wrong format or version is rejected with what was expected") {
  CkptTempDir tmp;
  Checkpoint c = sample_checkpoint(3);
  c.version = 99;
  write_checkpoint(tmp / "v.h5", c);
  std::string msg = io_error([&] { read_checkpoint(tmp / "v.h5"); });
  CHECK(msg.find("attribute 'version': expected 1..2, got 99 (written by a newer stride)") != std::string::npos);
  c.version = 0;
  write_checkpoint(tmp / "v.h5", c);
  msg = io_error([&] { read_checkpoint(tmp / "v.h5"); });
  CHECK(msg.find("got 0") != std::string::npos);
  // Version 1 (weights, no /progress) still loads, without progress.
  c.version = 1;
  c.has_progress = false;
  write_checkpoint(tmp / "v1.h5", c);
  const Checkpoint r = read_checkpoint(tmp / "v1.h5");
  CHECK(r.version == 1);
  CHECK_FALSE(r.has_progress);
  CHECK(r.params.at("conv1/bias").values == c.params.at("conv1/bias").values);
  // A version-2 file without /progress is malformed.
  c.version = 2;
  write_checkpoint(tmp / "v2.h5", c);
  msg = io_error([&] { read_checkpoint(tmp / "v2.h5"); });
  CHECK(msg.find("missing group /progress") != std::string::npos);
  // Not HDF5 at all, and a missing file.
  std::ofstream(tmp / "text.h5") << "hello";
  CHECK(io_error([&] { read_checkpoint(tmp / "text.h5"); }).find("not an HDF5 file") != std::string::npos);
  CHECK(io_error([&] { read_checkpoint(tmp / "none.h5"); }).find("no such checkpoint file") != std::string::npos);
}

TEST_CASE("checkpoint: resuming from a run directory falls back past corrupt newer checkpoints with warnings") {
  CkptTempDir tmp;
  const CheckpointDir dir(tmp.path.string());
  for (int64_t step : {2, 4, 6}) dir.save(sample_checkpoint(step), 3);
  const fs::path ck = tmp.path / "checkpoints";
  // Newest truncated, the one before it with a flipped data byte: step 2 is the newest good one.
  fs::resize_file(ck / "step-000000006.h5", fs::file_size(ck / "step-000000006.h5") / 2);
  const StoredBytes where = locate_dataset_bytes((ck / "step-000000004.h5").string(), "/params/conv1/weight");
  flip_byte((ck / "step-000000004.h5").string(), where.offset + 8);
  const ResumePoint r = find_resume_point(tmp.path.string());
  CHECK(fs::path(r.path).filename() == "step-000000002.h5");
  CHECK(r.checkpoint.step == 2);
  REQUIRE(r.warnings.size() == 2);
  CHECK(r.warnings[0].find("step-000000006.h5") != std::string::npos);
  CHECK(r.warnings[1].find("step-000000004.h5") != std::string::npos);
  CHECK(r.warnings[1].find("checksum") != std::string::npos);
  // Naming the corrupt file itself is an error, not a fallback.
  CHECK(io_error([&] { find_resume_point((ck / "step-000000004.h5").string()); }).find("checksum") !=
        std::string::npos);
  // Nothing usable at all.
  fs::remove(ck / "step-000000002.h5");
  CHECK(io_error([&] { find_resume_point(tmp.path.string()); }).find("no readable checkpoint") != std::string::npos);
  CHECK(io_error([&] { find_resume_point(tmp / "missing"); }).find("no such run directory") != std::string::npos);
}

TEST_CASE("checkpoint: a write that hits the file-size limit (disk full) fails cleanly and keeps the old checkpoint") {
  CkptTempDir tmp;
  const CheckpointDir dir(tmp.path.string());
  const Checkpoint old = sample_checkpoint(10);
  const std::string old_path = dir.save(old, 3);
  const std::string final_path = tmp / "final.h5";
  write_checkpoint(final_path, old);
  // A 64 KiB file-size limit on this process (the soft limit, restored at the end of the block) makes writing
  // ~1.2 MB fail with EFBIG as on a full disk; SIGXFSZ is ignored so that write() returns the error.
  // In-process rather than in a forked child: a child of a threaded process must not run library code.
  {
    struct FileSizeLimit {
      rlimit old{};
      void (*previous)(int) = nullptr;
      explicit FileSizeLimit(rlim_t bytes) {
        ::getrlimit(RLIMIT_FSIZE, &old);
        previous = std::signal(SIGXFSZ, SIG_IGN);
        const rlimit lim{bytes, old.rlim_max};
        ::setrlimit(RLIMIT_FSIZE, &lim);
      }
      ~FileSizeLimit() {
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, previous);
      }
    } limit(64 * 1024);
    const Checkpoint big = sample_checkpoint(20, 75 * 4000);
    const std::string msg = io_error([&] { dir.save(big, 3); });
    CHECK(msg.find("step-000000020.h5: checkpoint not written") != std::string::npos);
    CHECK(msg.find("earlier file is untouched") != std::string::npos);
    // Overwriting an existing file fails the same way.
    CHECK(io_error([&] { write_checkpoint(final_path, big); }).find("checkpoint not written") != std::string::npos);
  }
  // No temporary left behind, no new file, latest unchanged, the old files intact.
  CHECK_FALSE(any_temporaries(tmp.path / "checkpoints"));
  CHECK_FALSE(any_temporaries(tmp.path));
  CHECK_FALSE(fs::exists(tmp.path / "checkpoints" / "step-000000020.h5"));
  CHECK(dir.latest() == old_path);
  check_equal(old, read_checkpoint(old_path));
  check_equal(old, read_checkpoint(final_path));
}
