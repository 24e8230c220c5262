#pragma once
// A multi-host testbed for a test (cluster/testbed/testbed): N network-namespace hosts on a bridge, optionally
// rate-capped, optionally with a Slurm cluster on them; torn down when the object goes. Where namespaces
// cannot be made (not root, no iproute2) the test fails with the testbed's reason, never skips.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.hpp"
#include "tests/mpi_run.hpp"
#include "tests/run_command.hpp"

namespace stride::test {

inline std::string testbed_script() { return std::string(STRIDE_REPO_DIR) + "/cluster/testbed/testbed"; }

// `s` quoted for sh.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class Testbed {
 public:
  // `options`: e.g. "--rate 100mbit", "--slurm".
  explicit Testbed(int hosts, const std::string& options = "") {
    // The testbed belongs to this process: a later `up` removes it if this process dies without `down`.
    const CommandResult up = run_command("TESTBED_OWNER=" + std::to_string(::getpid()) + " " + testbed_script() +
                                         " up " + std::to_string(hosts) + " " + options);
    for (size_t at = 0; at < up.output.size();) {
      size_t end = up.output.find('\n', at);
      if (end == std::string::npos) end = up.output.size();
      const std::string line = up.output.substr(at, end - at);
      if (line.rfind("export ", 0) == 0)
        if (const size_t eq = line.find('='); eq != std::string::npos) {
          std::string value = line.substr(eq + 1);
          if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
          vars_[line.substr(7, eq - 7)] = value;
        }
      at = end + 1;
    }
    name_ = vars_["TESTBED"];
    if (up.exit_code != 0 || name_.empty()) {
      if (!name_.empty()) down();
      FAIL("the testbed of " << hosts << " hosts (" << options << ") could not be brought up (as CI runs it: root, "
                             "iproute2, slurm-wlm, munge):\n" << up.output);
    }
  }
  ~Testbed() { down(); }
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;

  const std::string& var(const std::string& name) { return vars_[name]; }
  std::vector<std::string> hosts() {
    std::vector<std::string> h;
    const std::string all = var("TESTBED_HOSTS");
    for (size_t at = 0; at <= all.size();) {
      const size_t end = std::min(all.find(',', at), all.size());
      h.push_back(all.substr(at, end - at));
      at = end + 1;
    }
    return h;
  }
  // The testbed's variables as "export NAME='value' ...; " for the front of a shell command line.
  std::string env() const {
    std::string e = "export";
    for (const auto& [k, v] : vars_) e += " " + k + "=" + shell_quote(v);
    return e + "; ";
  }
  // A shell command in this (the root) namespace with the testbed's variables (SLURM_CONF with --slurm).
  MpiRun run(const std::string& command) const { return MpiRun::run(env() + command); }

  // `mpirun MPIRUN_ARGS -np P stride ARGS` across the hosts over TCP (with `log`: its output into that file).
  // A launch that died before training started (no "stride: training" and a daemon failure in the output) is
  // retried: OpenMPI's orted has crashed at start on such testbeds (DESIGN.md), which is the machine, not stride.
  MpiRun mpirun(int processes, const std::string& mpirun_args, const std::string& stride_args,
                const std::string& log = "") const {
    MpiRun r;
    for (int attempt = 1; attempt <= 3; ++attempt) {
      r = run(testbed_script() + " mpirun " + mpirun_args + " -np " + std::to_string(processes) + " " +
              STRIDE_BINARY + " " + stride_args + (log.empty() ? "" : " > " + shell_quote(log)));
      const std::string output = r.output + (log.empty() ? "" : read_file(log));
      const bool started = output.find("stride: training") != std::string::npos;
      const bool daemon_died = output.find("ORTE") != std::string::npos ||
                               output.find("orted") != std::string::npos ||
                               output.find("daemon") != std::string::npos;
      if (r.exit_code == 0 || started || !daemon_died) break;
      MESSAGE("mpirun launch " << attempt << " died before training started; retrying:\n" << output);
    }
    return r;
  }

  void down() {
    if (name_.empty()) return;
    run_command(testbed_script() + " down " + name_);
    down_name_ = name_;
    name_.clear();
  }
  // After down(): what of the testbed is still there (processes started with its files, its holders, its
  // links), empty when nothing is.
  std::string leftovers() const {
    // [x]yz patterns: they do not match the shell that runs pgrep.
    const std::string bracketed = "[" + down_name_.substr(0, 1) + "]" + down_name_.substr(1);
    std::string left = run_command("pgrep -af " + shell_quote("[s]tride-testbed/" + down_name_) +
                                   "; ip -o link show | grep " + shell_quote(bracketed) + "; true")
                           .output;
    if (std::filesystem::exists("/run/stride-testbed/" + down_name_)) left += "/run/stride-testbed/" + down_name_;
    return left;
  }

 private:
  std::string name_, down_name_;
  std::map<std::string, std::string> vars_;
};

inline bool same_params(const Checkpoint& a, const Checkpoint& b, std::string& first_difference) {
  if (a.params.size() != b.params.size()) {
    first_difference = "different parameter sets";
    return false;
  }
  for (const auto& [name, arr] : a.params) {
    auto it = b.params.find(name);
    if (it == b.params.end() || it->second.values.size() != arr.values.size() ||
        std::memcmp(it->second.values.data(), arr.values.data(), arr.values.size() * sizeof(float)) != 0) {
      first_difference = name;
      return false;
    }
  }
  return true;
}

}  // namespace stride::test
