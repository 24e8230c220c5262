#pragma once
// Runs the `stride` binary alone or under `mpirun --oversubscribe --allow-run-as-root -np P` (as CI runs it,
// as root, on 2 cores), capturing its output, exit status and wall time.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/expect_error.hpp"

namespace stride::test {

inline std::string cifar_sample() { return std::string(STRIDE_SHARED_DATA) + "/cifar10-sample"; }

inline void require_cifar_sample() {
  REQUIRE_MESSAGE(std::filesystem::is_directory(cifar_sample()), cifar_sample() << " is missing");
}

inline size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

struct MpiRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr of every process
  double seconds = 0;
  std::string command;

  // `env`: "NAME=value ..." put in front of the command.
  static MpiRun run(const std::string& command) {
    MpiRun r;
    r.command = command;
    const auto t0 = std::chrono::steady_clock::now();
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
    const int status = pclose(pipe);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }
  static MpiRun single(const std::string& args, const std::string& env = "") {
    return run(env + " " + std::string(STRIDE_BINARY) + " " + args);
  }
#ifdef STRIDE_MPIEXEC
  static MpiRun mpi(int processes, const std::string& args, const std::string& env = "") {
    return run(env + " " + std::string(STRIDE_MPIEXEC) + " --oversubscribe --allow-run-as-root -np " +
               std::to_string(processes) + " " + std::string(STRIDE_BINARY) + " " + args);
  }
#endif
  void require_ok() const {
    INFO(command);
    INFO(output);
    REQUIRE(exit_code == 0);
  }
};

}  // namespace stride::test
