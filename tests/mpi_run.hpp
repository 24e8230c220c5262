#pragma once
// Runs the `stride` binary alone or under `mpirun --oversubscribe --allow-run-as-root -np P` (as CI runs it,
// as root, on 2 cores), capturing its output, exit status and wall time.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

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
  // When each piece of output arrived: (seconds since the start, output length after it).
  std::vector<std::pair<double, size_t>> arrivals;

  // `env`: "NAME=value ..." put in front of the command.
  static MpiRun run(const std::string& command) {
    MpiRun r;
    r.command = command;
    const auto t0 = std::chrono::steady_clock::now();
    auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::array<char, 4096> buf{};
    ssize_t n;
    // read(), not fread(): what arrives is recorded when it arrives.
    while ((n = ::read(fileno(pipe), buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      r.output.append(buf.data(), static_cast<size_t>(n));
      r.arrivals.emplace_back(since(), r.output.size());
    }
    const int status = pclose(pipe);
    r.seconds = since();
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }
  // Seconds from the arrival of the first output holding `marker` to the end of the command: how long a job
  // took to end after a fault it reported, whatever the start-up before it cost on a busy machine. A large
  // number when the marker never came.
  double seconds_after(const std::string& marker) const {
    const size_t at = output.find(marker);
    if (at == std::string::npos) return 1e9;
    for (const auto& [t, length] : arrivals)
      if (length >= at + marker.size()) return seconds - t;
    return 1e9;
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
