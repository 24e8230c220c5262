// Run configs: any bytes as the run_config JSON a checkpoint stores (compared by --resume against a real
// run's, framework/run_config.hpp) and as a `--config FILE` of `key = value` lines for `stride train`
// (apps/cli.cpp, parsed only: no training starts).
#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "framework/run_config.hpp"
#include "fuzz/fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  stride::fuzz::limit_memory();
  stride::app::set_parse_only(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string current = [] {
    stride::TrainConfig c;
    c.data = "data";
    stride::ScheduleOptions s = c.schedule;
    s.base_lr = c.lr;
    s.steps_per_epoch = 10;
    s.total_steps = 50;
    return stride::run_config_json(c, s, "none", 640);
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  stride::fuzz::expect_stride_errors("fuzz_run_config", [&] { stride::run_config_differences(text, current); });
  const std::string path = stride::fuzz::write_input(data, size, "run.ini");
  stride::fuzz::expect_stride_errors("fuzz_run_config", [&] {
    std::string args[] = {"train", "--config", path};
    char* argv[] = {args[0].data(), args[1].data(), args[2].data(), nullptr};
    try {
      stride::app::train(3, argv);
    } catch (const stride::app::ParsedOnly&) {
    }
  });
  return 0;
}
