// Weights in from PyTorch: a state_dict converted by scripts/torch_to_stride.py and trained one full-batch SGD
// step by `stride train --init` must move every parameter as PyTorch's own step does. The comparison itself is
// tests/torch_one_step.py (torch and h5py live in Debian's python, not in C++); this runs it and requires success.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace {

using stride::test::run_command;

constexpr const char* kPython = "/usr/bin/python3";  // Debian's: the one with python3-torch

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// CI installs the python packages (scripts/test.sh), so there a missing torch is a failure, never a skip.
bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0';
}

}  // namespace

TEST_CASE("PyTorch-initialised lenet5, cifar10_quick and a batch-norm spec model: one stride SGD step equals PyTorch's") {
  const auto probe = run_command(std::string(kPython) + " -c 'import torch, h5py, numpy'");
  if (probe.exit_code != 0) {
    if (in_ci())
      FAIL(kPython << " cannot import torch, h5py and numpy (scripts/test.sh installs python3-torch python3-h5py "
                      "python3-numpy):\n"
                   << probe.output);
    MESSAGE("not run: " << kPython << " cannot import torch, h5py and numpy (apt-get install python3-torch "
                        "python3-h5py python3-numpy); under CI=true this is a failure");
    return;
  }
  stride::test::TempDir dir("torch-weights");
  const auto r = run_command(std::string(kPython) + " " + quoted(STRIDE_REPO_DIR "/tests/torch_one_step.py") +
                             " --stride " + quoted(STRIDE_BINARY) + " --work " + quoted(dir.path.string()));
  CHECK_MESSAGE((r.exit_code == 0 && r.output.find("OK: 3 models") != std::string::npos),
                "tests/torch_one_step.py exited with " << r.exit_code << ":\n" << r.output);
}

TEST_CASE("bf16: one stride step with --precision bf16 is PyTorch's step on bf16-rounded operands, and within bf16 noise of autocast's") {
  // tests/torch_one_step.py --precision bf16: per parameter, stride's update is at most 3x (+1e-3) as far from
  // PyTorch's fp64 step on bf16-rounded convolution and linear operands as that step in fp32 is, and at most
  // 3x (+1e-2) as far from torch.autocast("cpu", torch.bfloat16)'s as PyTorch's fp32 update is.
  const auto probe = run_command(std::string(kPython) + " -c 'import torch, h5py, numpy'");
  if (probe.exit_code != 0) {
    if (in_ci()) FAIL(kPython << " cannot import torch, h5py and numpy:\n" << probe.output);
    MESSAGE("not run: " << kPython << " cannot import torch, h5py and numpy; under CI=true this is a failure");
    return;
  }
  stride::test::TempDir dir("torch-bf16");
  const auto r = run_command(std::string(kPython) + " " + quoted(STRIDE_REPO_DIR "/tests/torch_one_step.py") +
                             " --precision bf16 --stride " + quoted(STRIDE_BINARY) + " --work " +
                             quoted(dir.path.string()));
  CHECK_MESSAGE((r.exit_code == 0 && r.output.find("OK: 3 models") != std::string::npos &&
                 r.output.find("(bf16, autocast)") != std::string::npos),
                "tests/torch_one_step.py --precision bf16 exited with " << r.exit_code << ":\n" << r.output);
}
