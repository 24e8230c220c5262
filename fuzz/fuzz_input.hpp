#pragma once
// What the fuzz targets share. Readers take paths, so each input is written to a file in a per-process
// directory on tmpfs (/dev/shm when there is one) and read back from there. Every target accepts the errors
// stride reports (stride::Error and its kinds); anything else escaping a reader — a raw std::exception, a
// crash, a sanitizer report, an allocation over libFuzzer's -malloc_limit_mb — is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride::fuzz {

// Created on first use, removed with its files when the process exits.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = (base / ("stride-fuzz-" + std::to_string(::getpid()))).string();
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

// Writes the input to scratch_dir()/name and returns the path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  return path;
}

// Runs f; stride's own errors are expected answers to bad input, anything else aborts with the message.
template <class F>
void expect_stride_errors(const char* target, F&& f) {
  try {
    f();
  } catch (const stride::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: an untyped exception escaped: %s\n", target, stride::echo(e.what(), 500).c_str());
    std::abort();
  }
}

// The limit a fuzzed reader's own checks use: inputs are at most 1 MB, and 256 MB is what the issue allows.
inline void limit_memory() { stride::set_memory_limit(int64_t{256} << 20); }

}  // namespace stride::fuzz
