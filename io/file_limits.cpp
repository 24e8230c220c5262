#include "io/file_limits.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "framework/core/errors.hpp"

namespace stride {

std::optional<int64_t> regular_file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return static_cast<int64_t>(st.st_size);
}

void check_expansion(int64_t decoded, int64_t stored, const std::string& what) {
  if (decoded <= kFreeExpansion) return;
  if (stored <= 0 || decoded / kMaxExpansion > stored)
    throw IoError(what + ": promises " + std::to_string(decoded) + " bytes from " + std::to_string(stored) +
                  " stored bytes, more than " + std::to_string(kMaxExpansion) +
                  "x: refused as a likely decompression bomb");
}

std::string read_text_file(const std::string& path, const std::string& what, int64_t max_bytes) {
  const std::string where = what + " " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw IoError(where + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    ::close(fd);
    throw IoError(where + ": not a regular file" + (dir ? " (a directory)" : ""));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    throw IoError(where + ": " + std::to_string(st.st_size) + " bytes, over the limit of " +
                  std::to_string(max_bytes) + " bytes for this kind of file");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw IoError(where + ": read failed: " + std::strerror(err));
    }
    if (n == 0) break;  // the file shrank while being read
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(done);
  return text;
}

}  // namespace stride
