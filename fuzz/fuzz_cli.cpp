// The command line (apps/): the input split at NUL bytes into arguments, the first choosing the subcommand
// (summary, train, eval, predict, convert, bench, export), parsed exactly as `stride` parses them. Parse-only mode
// stops each command once its options are stored, so nothing runs.
#include <iterator>
#include <vector>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  stride::app::set_parse_only(true);
  // --help prints the usage; keep it off the fuzzer's output.
  std::cout.setstate(std::ios::failbit);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using Command = int (*)(int, char**);
  static const Command commands[] = {stride::app::summary, stride::app::train,   stride::app::eval,
                                     stride::app::predict, stride::app::convert, stride::app::bench,
                                     stride::app::export_model};
  if (size == 0) return 0;
  const Command run = commands[data[0] % std::size(commands)];
  std::vector<std::string> args{"command"};
  std::string current;
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(data[i]);
    }
  }
  if (!current.empty()) args.push_back(current);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  stride::fuzz::expect_stride_errors("fuzz_cli", [&] {
    try {
      run(static_cast<int>(args.size()), argv.data());
    } catch (const stride::app::ParsedOnly&) {
    }
  });
  return 0;
}
