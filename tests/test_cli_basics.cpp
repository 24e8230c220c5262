// What a newcomer sees first (issue 20, "Also"): --version, --help's defaults as typed, "1 thread", and the
// final accuracy line printed with four decimals like eval's. Through the real binary.
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include "tests/data_rule.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

using stride::test::last_line;
using stride::test::run_stride;

TEST_CASE("stride --version prints the version, and --help names it") {
  const auto v = run_stride("--version");
  CHECK(v.exit_code == 0);
  CHECK(v.output == std::string("stride ") + STRIDE_VERSION + "\n");
  const auto h = run_stride("--help");
  CHECK(h.exit_code == 0);
  CHECK(h.output.rfind(std::string("stride ") + STRIDE_VERSION, 0) == 0);
  CHECK(h.output.find("stride --version") != std::string::npos);
  // An unknown command still fails as a usage error.
  CHECK(run_stride("--frobnicate").exit_code == 2);
}

TEST_CASE("--help prints floating-point defaults as they were typed, not to 17 digits") {
  const auto h = run_stride("train --help");
  REQUIRE(h.exit_code == 0);
  CHECK(h.output.find("--momentum arg (=0.9)") != std::string::npos);
  CHECK(h.output.find("--lr arg (=0.01)") != std::string::npos);
  CHECK(h.output.find("--beta2 arg (=0.999)") != std::string::npos);
  CHECK(h.output.find("--gamma arg (=0.1)") != std::string::npos);
  CHECK(h.output.find("--comm-timeout arg (=300)") != std::string::npos);
  CHECK(h.output.find("--weight-decay arg (=0)") != std::string::npos);
  // No default anywhere in any command's help is a long binary expansion such as 0.90000000000000002.
  const std::regex long_float(R"(\(=-?[0-9]*\.[0-9]{8,}\))");
  for (const char* command : {"train", "eval", "predict", "bench", "summary", "convert", "export"}) {
    const auto r = run_stride(std::string(command) + " --help");
    CHECK_MESSAGE(r.exit_code == 0, command);
    CHECK_MESSAGE(!std::regex_search(r.output, long_float), command << ":\n" << r.output);
  }
}

TEST_CASE("bench says \"1 thread\", not \"1 threads\"") {
  const auto r = run_stride("bench --model lenet5 --batch 16 --steps 1 --warmup 0 --threads 1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find(", 1 thread, ") != std::string::npos);
  CHECK(r.output.find("1 threads") == std::string::npos);
}

TEST_CASE("train's final accuracy line has eval's four decimals") {
  const std::string mnist = std::string(STRIDE_SHARED_DATA) + "/mnist-digits-sample";
  if (!stride::test::have_data(mnist)) return;
  stride::test::TempDir dir("cli-basics");
  // 333 test images: the accuracy k/333 has no short decimal form, so the default stream precision would
  // print six digits.
  const auto t = run_stride("train --model lenet5 --data " + mnist + " --epochs 1 --limit-train 256 --limit-test 333 "
                            "--batch 32 --no-progress --out " + dir / "run");
  INFO(t.output);
  REQUIRE(t.exit_code == 0);
  std::smatch m;
  const std::string out = t.output;
  REQUIRE(std::regex_search(out, m, std::regex(R"(\ntest accuracy (\S+)\n)")));
  CHECK(std::regex_match(m[1].str(), std::regex(R"([01]\.[0-9]{4})")));
  const auto e = run_stride("eval --weights " + dir / "run/final.h5" + " --data " + mnist + " --limit 333");
  INFO(e.output);
  REQUIRE(e.exit_code == 0);
  // eval on the same images prints the same number, the same way.
  CHECK(e.output.rfind("accuracy " + m[1].str() + " (", 0) == 0);
}
