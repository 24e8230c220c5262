#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

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

TEST_CASE("stride summary --json lists every parameter's name, shape and role in network order") {
  using nlohmann::json;
  auto r = run_stride("summary --model lenet5 --json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const json j = json::parse(r.output);  // one object, nothing else on stdout or stderr
  CHECK(j["model"] == "lenet5");
  CHECK(j["input"] == json::array({1, 28, 28}));
  const json expected = json::parse(R"([
    {"name": "conv1/weight", "shape": [20, 1, 5, 5], "role": "learnable"},
    {"name": "conv1/bias", "shape": [20], "role": "learnable"},
    {"name": "conv2/weight", "shape": [50, 20, 5, 5], "role": "learnable"},
    {"name": "conv2/bias", "shape": [50], "role": "learnable"},
    {"name": "ip1/weight", "shape": [500, 800], "role": "learnable"},
    {"name": "ip1/bias", "shape": [500], "role": "learnable"},
    {"name": "ip2/weight", "shape": [10, 500], "role": "learnable"},
    {"name": "ip2/bias", "shape": [10], "role": "learnable"}])");
  CHECK(j["params"] == expected);
  CHECK(j["total_params"] == 431080);
  CHECK(j["state_count"] == 0);

  auto res = run_stride("summary --model resnet8 --json");
  REQUIRE_MESSAGE(res.exit_code == 0, res.output);
  const json k = json::parse(res.output);
  CHECK(k["total_params"] == 78042);
  int64_t learnable = 0, state = 0;
  json running_var;
  for (const auto& p : k["params"]) {
    int64_t size = 1;
    for (const auto& d : p["shape"]) size *= d.get<int64_t>();
    (p["role"] == "learnable" ? learnable : state) += size;
    if (p["name"] == "bn1/running_var") running_var = p;
  }
  CHECK(running_var == json::parse(R"({"name": "bn1/running_var", "shape": [16], "role": "state"})"));
  CHECK(learnable == 78042);
  CHECK(state == k["state_count"].get<int64_t>());
  CHECK(state > 0);

  // An input-agnostic spec takes its input from --input, and the JSON says which.
  auto mlp = run_stride("summary --model mlp --input 3,8,8 --json");
  REQUIRE_MESSAGE(mlp.exit_code == 0, mlp.output);
  const json m = json::parse(mlp.output);
  CHECK(m["input"] == json::array({3, 8, 8}));
  CHECK(m["params"][0] == json::parse(R"({"name": "fc1/weight", "shape": [256, 192], "role": "learnable"})"));
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
