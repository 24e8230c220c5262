// Command lines that wrappers build: a later flag overrides an earlier one, and progress output that is
// plain text wherever it is not a terminal outside a launcher (issue 17).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pty.h>
#include <string>
#include <vector>

#include "tests/data_rule.hpp"
#include "tests/mpi_run.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

extern char** environ;

namespace {

using stride::test::run_stride;
using stride::test::TempDir;

const std::string kCifar = std::string(STRIDE_SHARED_DATA) + "/cifar10-sample";
// One step per epoch: 16 training images in one batch.
const std::string kTiny = "train --model cifar10_quick --data " + kCifar +
                          " --limit-train 16 --limit-test 16 --batch 16 --log-every 1 --threads 1";

int epoch_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  int n = 0;
  std::string line;
  while (std::getline(in, line)) n += nlohmann::json::parse(line)["kind"] == "epoch";
  return n;
}

bool has_escape(const std::string& text) { return text.find('\033') != std::string::npos; }

// Runs `stride args...` with stdout and stderr on a fresh pseudo-terminal (as in an interactive shell), with
// `extra_env` added to the environment; returns what it printed. posix_spawn, not fork: the test process
// may already run TBB threads.
std::string run_on_terminal(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
  int master = -1, slave = -1;
  REQUIRE(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
  std::vector<char*> argv{const_cast<char*>(STRIDE_BINARY)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "SLURM_", 6) != 0 && std::strncmp(*e, "OMPI_", 5) != 0 && std::strncmp(*e, "PMI", 3) != 0)
      envp.push_back(*e);
  for (const auto& e : extra_env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, slave, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, slave, STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, master);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, STRIDE_BINARY, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(slave);
  REQUIRE(rc == 0);
  std::string output;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(master, buf.data(), buf.size());
    if (n > 0) output.append(buf.data(), static_cast<size_t>(n));
    else if (n < 0 && errno == EINTR) continue;
    else break;  // EIO once the child has closed the terminal
  }
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  INFO(output);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return output;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> words;
  size_t at = 0;
  while ((at = text.find_first_not_of(' ', at)) != std::string::npos) {
    const size_t end = text.find(' ', at);
    words.push_back(text.substr(at, end - at));
    at = end;
  }
  return words;
}

}  // namespace

TEST_CASE("a later flag overrides an earlier one, as wrappers that pass defaults first need") {
  if (!stride::test::have_data(kCifar)) return;
  TempDir tmp("overrides");
  // The README's main job passes --epochs 5 before the user's arguments; the user's --epochs wins.
  auto r = run_stride(kTiny + " --epochs 1 --epochs 3 --out " + (tmp / "three"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(epoch_lines(tmp / "three") == 3);
  CHECK(stride::test::count(r.output, "epoch 3/3:") == 1);
  // Between two flags that contradict each other, the later wins too.
  r = run_stride(kTiny + " --epochs 1 --no-progress --progress lines --out " + (tmp / "lines"));
  REQUIRE(r.exit_code == 0);
  CHECK(stride::test::count(r.output, "epoch 1/1 step 1/1 loss") == 1);
  r = run_stride(kTiny + " --epochs 1 --progress lines --no-progress --out " + (tmp / "none"));
  REQUIRE(r.exit_code == 0);
  CHECK(stride::test::count(r.output, "epoch 1/1 step") == 0);
  r = run_stride(kTiny + " --epochs 1 --progress sometimes --out " + (tmp / "bad"));
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--progress: expected auto, bar, lines or none, got \"sometimes\"") != std::string::npos);
}

TEST_CASE("--progress: a bar only on a terminal outside a launcher; plain lines in files and under launchers") {
  if (!stride::test::have_data(kCifar)) return;
  TempDir tmp("progress");
  const std::string args = kTiny + " --epochs 2 --out " + (tmp / "run") + " --overwrite";
  // On a terminal: the live bar (carriage returns and ESC[K), as PyTorch Lightning's or Keras' bars.
  const std::string bar = run_on_terminal(split(args), {});
  CHECK(has_escape(bar));
  CHECK(stride::test::count(bar, "] epoch 2/2 step 1/1 loss") == 1);
  // The same terminal under Slurm's srun (SLURM_PROCID set by every launched task): lines.
  const std::string launched = run_on_terminal(split(args), {"SLURM_PROCID=0"});
  CHECK_FALSE(has_escape(launched));
  CHECK(stride::test::count(launched, "\nepoch 2/2 step 1/1 loss") == 1);
  // --progress bar asks for the bar anywhere; none prints the epoch lines only.
  const std::string forced = run_on_terminal(split(args + " --progress bar"), {"SLURM_PROCID=0"});
  CHECK(has_escape(forced));
  const std::string none = run_on_terminal(split(args + " --progress none"), {});
  CHECK_FALSE(has_escape(none));
  CHECK(stride::test::count(none, "epoch 2/2 step") == 0);
  CHECK(stride::test::count(none, "epoch 2/2: loss") == 1);
  // Output into a pipe or file: lines.
  const auto piped = run_stride(args);
  REQUIRE(piped.exit_code == 0);
  CHECK_FALSE(has_escape(piped.output));
  CHECK(stride::test::count(piped.output, "epoch 1/2 step 1/1 loss") == 1);
}

#ifdef STRIDE_MPIEXEC
TEST_CASE("mpirun's output redirected to a file holds no terminal codes (rank 0's stdout is a pseudo-terminal)") {
  if (!stride::test::have_data(kCifar)) return;
  TempDir tmp("progress-mpi");
  const std::string log = tmp / "run.log";
  const auto r = stride::test::run_command(std::string(STRIDE_MPIEXEC) +
                                           " --oversubscribe --allow-run-as-root -np 2 " + STRIDE_BINARY + " " +
                                           kTiny + " --batch 32 --limit-train 64 --epochs 2 --out " + (tmp / "run") +
                                           " > " + log);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(r.output);
  INFO(text);
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(has_escape(text));
  CHECK(text.find('\r') == std::string::npos);
  CHECK(stride::test::count(text, "epoch 2/2 step 2/2 loss") == 1);
}
#endif
