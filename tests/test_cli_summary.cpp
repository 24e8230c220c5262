#include <doctest/doctest.h>

#include "tests/run_command.hpp"

using stride::test::last_line;
using stride::test::run_stride;

TEST_CASE("stride summary ends with the zoo models' exact parameter counts") {
  auto quick = run_stride("summary --model cifar10_quick");
  CHECK(quick.exit_code == 0);
  CHECK(last_line(quick.output) == "Total params: 145578");
  CHECK(quick.output.find("pool3") != std::string::npos);
  CHECK(last_line(run_stride("summary --model lenet5").output) == "Total params: 431080");
  CHECK(last_line(run_stride("summary --model resnet8").output) == "Total params: 78042");
  CHECK(last_line(run_stride("summary --model mlp --input 1,28,28").output) == "Total params: 203530");
}

TEST_CASE("stride summary prints the three-billion-parameter example without allocating it") {
  auto r = run_stride("summary --model " STRIDE_REPO_DIR "/docs/specs/megapixel_fc.json");
  CHECK(r.exit_code == 0);
  CHECK(last_line(r.output) == "Total params: 3000001000");
}

TEST_CASE("stride summary rejects bad input with a one-line error and a non-zero exit") {
  auto unknown = run_stride("summary --model lenet6");
  CHECK(unknown.exit_code != 0);
  CHECK(unknown.output.find("error: model 'lenet6': not a built-in model") == 0);
  auto no_input = run_stride("summary --model mlp");
  CHECK(no_input.exit_code != 0);
  CHECK(no_input.output.find("no \"input\" shape") != std::string::npos);
  auto bad_shape = run_stride("summary --model mlp --input 1,x,28");
  CHECK(bad_shape.exit_code != 0);
  CHECK(bad_shape.output.find("--input") != std::string::npos);
  auto bad_flag = run_stride("summary --modle lenet5");
  CHECK(bad_flag.exit_code != 0);
  auto help = run_stride("summary --help");
  CHECK(help.exit_code == 0);
  CHECK(help.output.find("--model") != std::string::npos);
  auto top = run_stride("--help");
  CHECK(top.exit_code == 0);
  CHECK(top.output.find("summary") != std::string::npos);
}

TEST_CASE("stride bench times training steps and each layer on random data") {
  auto r = run_stride("bench --model lenet5 --batch 8 --steps 2 --warmup 1 --threads 1 --per-layer");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("images/s (training)") != std::string::npos);
  CHECK(r.output.find("conv2 ") != std::string::npos);
  CHECK(run_stride("bench --batch 0").exit_code != 0);
}

TEST_CASE("every subcommand answers --help with its options") {
  for (const char* cmd : {"summary", "train", "eval", "predict", "convert", "bench"}) {
    CAPTURE(cmd);
    auto r = run_stride(std::string(cmd) + " --help");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("usage: stride " + std::string(cmd)) == 0);
    CHECK(r.output.find("--help") != std::string::npos);
  }
  auto unknown = run_stride("frobnicate");
  CHECK(unknown.exit_code != 0);
  CHECK(unknown.output.find("unknown command 'frobnicate'") != std::string::npos);
}
