#pragma once
// Runs the real `stride` binary from tests and captures what it prints.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>

namespace stride::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line; its exit status and stdout + stderr together.
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline CommandResult run_stride(const std::string& args) { return run_command(std::string(STRIDE_BINARY) + " " + args); }

// The last non-empty line of a command's output.
inline std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

}  // namespace stride::test

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <vector>

namespace stride::test {

// A run of the `stride` binary with what it cost: its peak resident memory and CPU time (from wait4, this
// child alone) and its wall time. Arguments go to execve unchanged (no shell), so they may hold any bytes.
// Bounds belong on the CPU time: the wall time also counts whatever else the machine is doing.
struct MeasuredResult : CommandResult {
  long max_rss_kb = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system
};

inline MeasuredResult run_stride_measured(const std::vector<std::string>& args,
                                          const std::vector<std::string>& env = {}) {
  MeasuredResult r;
  int fds[2];
  if (pipe(fds) != 0) return r;
  // Everything the child needs is built before fork(): between fork and exec the child of a threaded process
  // may only make async-signal-safe calls (no allocation, no putenv).
  std::vector<char*> argv{const_cast<char*>(STRIDE_BINARY)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  auto overridden = [&](const char* entry) {
    for (const auto& e : env)
      if (const size_t eq = e.find('='); eq != std::string::npos && std::strncmp(entry, e.c_str(), eq + 1) == 0)
        return true;
    return false;
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) envp.push_back(*e);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    const int null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0) dup2(null_in, STDIN_FILENO);
    alarm(120);  // a hang ends as SIGALRM (exit code 128 + 14) instead of hanging the test; kept across exec
    execve(STRIDE_BINARY, argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::array<char, 4096> buf{};
  ssize_t n;
  while ((n = read(fds[0], buf.data(), buf.size())) > 0) r.output.append(buf.data(), static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kb = usage.ru_maxrss;
  r.cpu_seconds = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                  1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace stride::test
