#include "framework/core/limits.hpp"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>

#include "framework/core/errors.hpp"

namespace stride {

std::optional<int64_t> mul_sizes(int64_t a, int64_t b) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

std::optional<int64_t> add_sizes(int64_t a, int64_t b) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

std::string echo(std::string_view value, size_t max) {
  std::string out;
  const size_t shown = value.size() > max ? max : value.size();
  out.reserve(shown + 32);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (value.size() > max) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

void check_json_depth(std::string_view text, const std::string& where, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw ConfigError(where + ": JSON nested deeper than " + std::to_string(max_depth) + " levels (at byte " +
                          std::to_string(i) + ")");
    } else if (c == ']' || c == '}') {
      --depth;  // unbalanced text is the parser's to report
    }
  }
}

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<int64_t>(pages) * static_cast<int64_t>(page);
}

namespace {
std::atomic<int64_t> limit_bytes{-1};  // -1: not set, half of physical memory
}

int64_t memory_limit() {
  const int64_t set = limit_bytes.load();
  if (set >= 0) return set;
  const int64_t phys = physical_memory_bytes();
  return phys > 0 ? phys / 2 : (int64_t{4} << 30);
}

void set_memory_limit(int64_t bytes) { limit_bytes.store(bytes); }

std::string human_bytes(int64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

void check_memory(int64_t bytes, const std::string& what) {
  const int64_t limit = memory_limit();
  if (bytes < 0)
    throw ResourceError(what + ": the size overflows int64, far over the --max-memory limit of " +
                        std::to_string(limit) + " bytes (" + human_bytes(limit) + ")");
  if (bytes > limit)
    throw ResourceError(what + " needs " + std::to_string(bytes) + " bytes (" + human_bytes(bytes) +
                        "), over the --max-memory limit of " + std::to_string(limit) + " bytes (" + human_bytes(limit) +
                        ")");
}

int64_t parse_byte_size(const std::string& text, const std::string& flag) {
  const auto bad = [&] {
    return UsageError(flag + ": expected a size such as 512M, 8G or a number of bytes, got \"" + echo(text) + "\"");
  };
  if (text.empty() || text.size() > 32) throw bad();
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  double scale = 1;
  if (unit.size() == 1) {
    switch (unit[0]) {
      case 'k': case 'K': scale = 1024.0; break;
      case 'm': case 'M': scale = 1024.0 * 1024; break;
      case 'g': case 'G': scale = 1024.0 * 1024 * 1024; break;
      case 't': case 'T': scale = 1024.0 * 1024 * 1024 * 1024; break;
      default: throw bad();
    }
  } else if (!unit.empty()) {
    throw bad();
  }
  const double bytes = v * scale;
  if (!std::isfinite(bytes) || bytes < 1 || bytes >= 9.0e18) throw bad();
  return static_cast<int64_t>(bytes);
}

}  // namespace stride
