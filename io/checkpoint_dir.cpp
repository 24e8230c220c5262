#include "io/checkpoint_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "framework/core/errors.hpp"

namespace stride {
namespace fs = std::filesystem;

namespace {

// The step of a "step-<digits>.h5" name, or -1.
int64_t step_of(const std::string& name) {
  constexpr std::string_view prefix = "step-", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

void fsync_or_throw(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw IoError(path + ": cannot open for fsync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(path + ": fsync failed: " + std::strerror(err));
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step-%09lld.h5", static_cast<long long>(step));
  return buf;
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const fs::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw IoError(std::string("cannot create the temporary: ") + std::strerror(errno));
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = errno;
        ::close(fd);
        throw IoError(std::string("write failed: ") + std::strerror(n < 0 ? err : ENOSPC));
      }
      done += static_cast<size_t>(n);
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    if (::close(fd) != 0 || rc != 0) throw IoError(std::string("fsync/close failed: ") + std::strerror(err));
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(std::string("rename failed: ") + std::strerror(errno));
    fsync_or_throw(dir, true);
  } catch (const IoError& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw IoError(path + ": not written (" + e.what() + "); the previous file is untouched");
  }
}

CheckpointDir::CheckpointDir(std::string run_dir) : run_dir_(std::move(run_dir)) {}

std::string CheckpointDir::dir() const { return (fs::path(run_dir_) / "checkpoints").string(); }

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const int64_t step = step_of(name);
    if (step >= 0 && it->is_regular_file(ec)) found.emplace_back(step, it->path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> paths;
  for (auto& f : found) paths.push_back(std::move(f.second));
  return paths;
}

std::string CheckpointDir::latest() const {
  std::ifstream in(fs::path(dir()) / "latest");
  std::string name;
  if (!in || !std::getline(in, name) || name.empty()) return "";
  return (fs::path(dir()) / name).string();
}

std::string CheckpointDir::save(const Checkpoint& ckpt, int64_t keep) const {
  if (keep < 1) throw UsageError("--keep: expected a value >= 1, got " + std::to_string(keep));
  std::error_code ec;
  fs::create_directories(dir(), ec);
  if (ec) throw IoError(dir() + ": cannot create the checkpoint directory: " + ec.message());
  const std::string name = checkpoint_file_name(ckpt.step);
  const std::string path = (fs::path(dir()) / name).string();
  write_checkpoint(path, ckpt);
  write_text_atomically((fs::path(dir()) / "latest").string(), name + "\n");
  // Only after `latest` names the new file may older ones go, so a crash here leaves extra files, never
  // too few.
  // The file just written is never among them, even if files of a higher step (another run's) are present.
  const auto files = list();
  for (size_t i = static_cast<size_t>(keep); i < files.size(); ++i)
    if (!fs::equivalent(files[i], path, ec)) fs::remove(files[i], ec);
  // Temporaries of writers killed mid-write (never ours in flight: this process writes one file at a time).
  for (fs::directory_iterator it(dir(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.find(".tmp.") != std::string::npos) fs::remove(it->path(), ec);
  }
  return path;
}

ResumePoint find_resume_point(const std::string& where) {
  ResumePoint r;
  std::error_code ec;
  if (!fs::exists(where, ec)) throw IoError(where + ": no such run directory or checkpoint file");
  if (!fs::is_directory(where, ec)) {
    r.path = where;
    r.checkpoint = read_checkpoint(where);
    const fs::path p = fs::absolute(where, ec);
    r.run_dir = p.parent_path().filename() == "checkpoints" ? p.parent_path().parent_path().string()
                                                             : p.parent_path().string();
    return r;
  }
  r.run_dir = where;
  const CheckpointDir cd(where);
  for (const auto& path : cd.list()) {
    try {
      r.checkpoint = read_checkpoint(path);
      r.path = path;
      break;
    } catch (const IoError& e) {
      r.warnings.push_back(std::string(e.what()) + "; trying an older checkpoint");
    }
  }
  const std::string final_path = (fs::path(where) / "final.h5").string();
  if (fs::exists(final_path, ec)) {
    try {
      Checkpoint f = read_checkpoint(final_path);
      if (r.path.empty() || f.step > r.checkpoint.step) {
        r.checkpoint = std::move(f);
        r.path = final_path;
      }
    } catch (const IoError& e) {
      if (r.path.empty()) r.warnings.push_back(e.what());
    }
  }
  if (r.path.empty())
    throw IoError(where + ": no readable checkpoint in " + cd.dir() + " (nor a final.h5)" +
                  (r.warnings.empty() ? "" : "; newest problem: " + r.warnings.front()));
  return r;
}

}  // namespace stride
