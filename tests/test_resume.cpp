// Exact resume through the real `stride train` binary: a run stopped anywhere (by --stop-after-step, SIGTERM
// or kill -9) and resumed ends with bit-identical parameters, batch-norm state and optimizer slots, and the
// same metrics lines, as the uninterrupted run. The model has batch norm and dropout, so the data order,
// dropout masks and running statistics all have to line up. Data: the MNIST digits sample (skipped when absent, a failure under CI=true).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "framework/core/errors.hpp"
#include "io/checkpoint.hpp"
#include "io/checkpoint_dir.hpp"
#include "run_command.hpp"

#include "tests/data_rule.hpp"
#include "tests/temp_dir.hpp"

using namespace stride;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMnist = std::string(STRIDE_SHARED_DATA) + "/mnist-digits-sample";

struct ResumeTempDir : test::TempDir {
  ResumeTempDir() : TempDir("resume") {
    // Conv + batch norm + dropout: every piece of state a resume has to restore.
    std::ofstream(path / "tiny.json") << R"({"name": "tiny", "layers": [
      {"name": "conv1", "type": "conv2d", "out_channels": 4, "kernel": 5, "stride": 2},
      {"name": "bn1", "type": "batchnorm2d"},
      {"name": "relu1", "type": "relu"},
      {"name": "pool1", "type": "max_pool2d", "kernel": 2, "stride": 2},
      {"name": "flatten", "type": "flatten"},
      {"name": "drop", "type": "dropout", "p": 0.3},
      {"name": "fc", "type": "linear", "out_features": 10}]})";
  }
};

bool have_data() { return stride::test::have_data(kMnist); }

// 160 samples in batches of 16: 10 steps per epoch; metrics every 3 steps, so checkpoints fall inside
// metrics windows too. `changes` replace or add flags ("--lr 0.1 --batch 32").
std::string train_args(const ResumeTempDir& tmp, const std::string& optimizer, int64_t epochs = 3,
                       int64_t limit_train = 160, const std::string& changes = "") {
  std::map<std::string, std::string> flags = {
      {"--model", tmp / "tiny.json"}, {"--data", kMnist}, {"--limit-train", std::to_string(limit_train)},
      {"--limit-test", "64"}, {"--batch", "16"}, {"--epochs", std::to_string(epochs)}, {"--log-every", "3"},
      {"--lr", "0.05"}, {"--weight-decay", "0.0005"}, {"--optimizer", optimizer}};
  if (optimizer == "adam") flags["--lr"] = "0.002";
  else flags["--momentum"] = "0.9";
  std::istringstream in(changes);
  std::string key, value;
  while (in >> key >> value) flags[key] = value;
  std::string a = "train --no-progress ";
  for (const auto& [k, v] : flags) a += k + " " + v + " ";
  return a;
}

// Every dataset of two checkpoints bitwise, and the position and progress they record.
// `cadence_may_differ`: the runs wrote checkpoints at different times (run_config records when), which changes
// none of the numbers.
void check_same_state(const std::string& a_path, const std::string& b_path, bool tiny_model = true,
                      bool cadence_may_differ = false) {
  const Checkpoint a = read_checkpoint(a_path), b = read_checkpoint(b_path);
  CHECK(a.step == b.step);
  CHECK(a.epoch == b.epoch);
  CHECK(a.samples_seen == b.samples_seen);
  CHECK(a.optimizer_kind == b.optimizer_kind);
  CHECK(a.optimizer_steps == b.optimizer_steps);
  CHECK(a.progress.test_accuracy == b.progress.test_accuracy);
  CHECK(a.progress.test_loss == b.progress.test_loss);
  if (cadence_may_differ) {
    json ja = json::parse(a.run_config), jb = json::parse(b.run_config);
    for (const char* k : {"checkpoint_every", "checkpoint_epochs", "checkpoint_minutes", "keep"}) {
      ja.erase(k);
      jb.erase(k);
    }
    CHECK(ja == jb);
  } else {
    CHECK(a.run_config == b.run_config);
  }
  REQUIRE(a.params.size() == b.params.size());
  if (tiny_model) CHECK(a.params.count("bn1/running_mean") == 1);
  for (const auto& [key, arr] : a.params) {
    const std::string& name = key;  // CAPTURE's lambda cannot capture a structured binding in clang 14
    CAPTURE(name);
    REQUIRE(b.params.count(name) == 1);
    REQUIRE(arr.values.size() == b.params.at(name).values.size());
    CHECK(std::memcmp(arr.values.data(), b.params.at(name).values.data(), arr.values.size() * sizeof(float)) == 0);
  }
  REQUIRE(a.optimizer.size() == b.optimizer.size());
  CHECK(!a.optimizer.empty());
  for (const auto& [key, arr] : a.optimizer) {
    const std::string& name = key;
    CAPTURE(name);
    REQUIRE(b.optimizer.count(name) == 1);
    REQUIRE(arr.values.size() == b.optimizer.at(name).values.size());
    CHECK(std::memcmp(arr.values.data(), b.optimizer.at(name).values.data(), arr.values.size() * sizeof(float)) == 0);
  }
}

// metrics.jsonl without its timing fields.
std::vector<json> metrics_of(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::vector<json> lines;
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    j.erase("img_per_s");
    j.erase("seconds");
    lines.push_back(j);
  }
  return lines;
}

void check_same_metrics(const std::string& a, const std::string& b, size_t expected_lines) {
  const auto ma = metrics_of(a), mb = metrics_of(b);
  CHECK(ma.size() == expected_lines);
  REQUIRE(ma.size() == mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    CAPTURE(i);
    CHECK(ma[i].dump() == mb[i].dump());
  }
}

// Runs the binary; prints the command and its output when it fails, expected or not.
test::CommandResult run(const std::string& args) {
  auto r = test::run_stride(args);
  if (r.exit_code != 0) MESSAGE("stride " << args << " -> " << r.exit_code << "\n" << r.output);
  return r;
}

// Starts `stride args...` with output to `log`; returns the pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(STRIDE_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(STRIDE_BINARY, argv.data());
    ::_exit(127);
  }
  return pid;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

int wait_status(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every checkpoint in RUN_DIR/checkpoints reads cleanly (a killed run never leaves a partial one).
void check_all_checkpoints_load(const std::string& run_dir) {
  for (const auto& p : CheckpointDir(run_dir).list()) {
    CAPTURE(p);
    CHECK_NOTHROW(read_checkpoint(p));
  }
}

}  // namespace

TEST_CASE("resume: SGD momentum, stopped at an epoch boundary or mid-epoch, ends bit-identical to one run") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string args = train_args(tmp, "sgd");
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  // 30 steps; epochs end at 10, 20. Step 14 is inside both an epoch and a metrics window (12..15).
  for (int64_t stop : {10, 14}) {
    CAPTURE(stop);
    const std::string out = tmp / ("split" + std::to_string(stop));
    auto first = run(args + "--out " + out + " --stop-after-step " + std::to_string(stop));
    REQUIRE(first.exit_code == 0);
    CHECK(first.output.find("stride: stopped at epoch " + std::to_string(stop / 10 + 1) + " step " +
                            std::to_string(stop)) != std::string::npos);
    CHECK(fs::exists(fs::path(out) / "checkpoints" / checkpoint_file_name(stop)));
    CHECK_FALSE(fs::exists(fs::path(out) / "final.h5"));
    // The resumed half runs on one thread, the first on the default count: the result may not differ.
    auto second = run(args + "--resume " + out + " --threads 1");
    REQUIRE(second.exit_code == 0);
    CHECK(second.output.find("resuming from " + (fs::path(out) / "checkpoints" / checkpoint_file_name(stop)).string() +
                             " at epoch " + std::to_string(stop / 10 + 1) + " step " + std::to_string(stop)) !=
          std::string::npos);
    check_same_state(tmp / "full/final.h5", out + "/final.h5");
    // 3 epochs x (steps 3, 6, 9, 10 lines + 1 epoch line).
    check_same_metrics(tmp / "full", out, 15);
  }
}

TEST_CASE("resume: Adam, stopped mid-epoch twice and resumed from a checkpoint file, ends bit-identical") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string args = train_args(tmp, "adam");
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  const std::string out = tmp / "split";
  REQUIRE(run(args + "--out " + out + " --stop-after-step 7").exit_code == 0);
  // Resume from the file (the run directory is found above checkpoints/), stop again in the next epoch.
  REQUIRE(run(args + "--resume " + out + "/checkpoints/" + checkpoint_file_name(7) + " --stop-after-step 23")
              .exit_code == 0);
  CHECK(fs::exists(fs::path(out) / "checkpoints" / checkpoint_file_name(23)));
  REQUIRE(run(args + "--resume " + out).exit_code == 0);
  const Checkpoint c = read_checkpoint(out + "/final.h5");
  CHECK(c.optimizer.count("conv1/weight/exp_avg_sq") == 1);
  CHECK(c.optimizer_steps == 30);
  check_same_state(tmp / "full/final.h5", out + "/final.h5");
  check_same_metrics(tmp / "full", out, 15);
  // Extending a finished run (constant schedule, so --epochs may grow) continues from final.h5.
  const std::string args2 = train_args(tmp, "adam", 2, 160, "--schedule constant");
  const std::string args4 = train_args(tmp, "adam", 4, 160, "--schedule constant");
  REQUIRE(run(args4 + "--out " + tmp / "c4").exit_code == 0);
  REQUIRE(run(args2 + "--out " + tmp / "c2").exit_code == 0);
  REQUIRE(run(args4 + "--resume " + tmp / "c2").exit_code == 0);
  check_same_state(tmp / "c4/final.h5", tmp / "c2/final.h5");
}

TEST_CASE("resume: SIGTERM finishes the step, writes a checkpoint, exits 0 with the resume command") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  // 2 epochs of 30 steps with a checkpoint every 2 steps: long enough to be signalled mid-run.
  const std::string args = train_args(tmp, "sgd", 2, 480) + "--checkpoint-every 2 ";
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  const std::string out = tmp / "run";
  const pid_t pid = spawn(split(args + "--out " + out), tmp / "log.txt");
  // Wait for the first checkpoint, so training is under way.
  for (int i = 0; i < 2000 && !fs::exists(fs::path(out) / "checkpoints" / "latest"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGTERM);
  const int status = wait_status(pid);
  const std::string log = read_all(tmp / "log.txt");
  INFO(log);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const auto at = log.find("stride: stopped at epoch ");
  REQUIRE(at != std::string::npos);
  const int64_t step = std::stoll(log.substr(log.find(" step ", at) + 6));
  CHECK(step > 0);
  CHECK(step < 60);
  // The resume line names the run directory and this launch's own flags, nothing the checkpoint stores; run
  // as printed, it continues bitwise.
  const std::string resume_prefix = "stride: resume with: stride ";
  const size_t printed = log.find(resume_prefix);
  REQUIRE(printed != std::string::npos);
  const size_t from = printed + resume_prefix.size();
  const std::string resume_args = log.substr(from, log.find('\n', from) - from);
  CHECK(resume_args == "train --resume " + out + " --no-progress");
  const std::string ckpt = (fs::path(out) / "checkpoints" / checkpoint_file_name(step)).string();
  REQUIRE(fs::exists(ckpt));
  CHECK(CheckpointDir(out).latest() == ckpt);
  CHECK(read_checkpoint(ckpt).step == step);
  REQUIRE(run(resume_args).exit_code == 0);
  check_same_state(tmp / "full/final.h5", out + "/final.h5");
  check_same_metrics(tmp / "full", out, 22);

  // A second signal aborts at once, non-zero (SIGTERM then SIGINT: distinct signals are never merged).
  const std::string out2 = tmp / "run2";
  const pid_t pid2 = spawn(split(args + "--out " + out2), tmp / "log2.txt");
  for (int i = 0; i < 2000 && !fs::exists(fs::path(out2) / "checkpoints" / "latest"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid2, SIGTERM);
  ::kill(pid2, SIGINT);
  const int status2 = wait_status(pid2);
  const std::string log2 = read_all(tmp / "log2.txt");
  INFO(log2);
  REQUIRE(WIFEXITED(status2));
  // The exit status names the signal handled second. When both are pending at once, Linux delivers the lower
  // number (SIGINT) first, so either order can happen.
  CHECK((WEXITSTATUS(status2) == 128 + SIGINT || WEXITSTATUS(status2) == 128 + SIGTERM));
  CHECK(log2.find("stride: second signal, aborting without a checkpoint") != std::string::npos);
  check_all_checkpoints_load(out2);
}

TEST_CASE("resume: kill -9 at random moments never leaves a bad checkpoint, and resuming reproduces the run") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string args = train_args(tmp, "sgd", 2, 480) + "--checkpoint-every 2 --keep 2 ";
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  // Kill delays are fractions of the uninterrupted run's time, so the kills land mid-run on a fast or a
  // loaded machine alike.
  const double full_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const std::string out = tmp / "run";
  std::mt19937 gen(20261125);
  std::uniform_real_distribution<double> fraction(0.1, 0.45);
  auto delay_ms = [&](std::mt19937& g) { return static_cast<int>(fraction(g) * full_ms); };
  int kills = 0;
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    const bool have_checkpoint = !CheckpointDir(out).list().empty();
    const pid_t pid = spawn(split(args + (have_checkpoint ? "--resume " : "--out ") + out), tmp / "log.txt");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(gen)));
    ::kill(pid, SIGKILL);
    const int status = wait_status(pid);
    if (WIFSIGNALED(status)) ++kills;
    check_all_checkpoints_load(out);
  }
  MESSAGE(kills << " of 4 rounds were killed mid-run");
  CHECK(kills >= 1);
  const auto r = run(args + (CheckpointDir(out).list().empty() ? "--out " : "--resume ") + out);
  REQUIRE(r.exit_code == 0);
  check_same_state(tmp / "full/final.h5", out + "/final.h5");
  check_same_metrics(tmp / "full", out, 22);
}

TEST_CASE("resume: a different model, optimizer or setting is refused with what differs, and a corrupt newest file falls back") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string args = train_args(tmp, "sgd", 2) + "--checkpoint-every 4 ";
  const std::string out = tmp / "run";
  REQUIRE(run(args + "--out " + out + " --stop-after-step 13").exit_code == 0);
  // Checkpoints at 4, 8, 10 (epoch end), 12, 13; the newest 3 are kept.
  const auto files = CheckpointDir(out).list();
  REQUIRE(files.size() == 3);
  CHECK(fs::path(files[0]).filename() == checkpoint_file_name(13));

  auto with = [&](const std::string& changes) { return train_args(tmp, "sgd", 2, 160, "--checkpoint-every 4 " + changes); };
  auto r = run(with("--optimizer adam") + "--resume " + out);
  CHECK(r.exit_code == 2);  // the flags contradict the checkpoint: a usage error
  CHECK(r.output.find("\n  --optimizer: given \"adam\", the checkpoint has \"sgd\"") != std::string::npos);
  CHECK(r.output.find("start a new run from its weights with --init") != std::string::npos);
  // Every difference at once, one per line (printed as lines, not as "\n" escapes).
  r = run(with("--lr 0.1 --batch 32") + "--resume " + out);
  CHECK(r.exit_code == 2);  // the flags contradict the checkpoint: a usage error
  CHECK(r.output.find("cannot resume with settings that differ from the checkpoint's") != std::string::npos);
  CHECK(r.output.find("\n  --batch: given 32, the checkpoint has 16\n") != std::string::npos);
  CHECK(r.output.find("\n  --lr: given 0.1, the checkpoint has 0.05") != std::string::npos);
  CHECK(r.output.find("\\n") == std::string::npos);
  r = run(with("--epochs 3") + "--resume " + out);
  CHECK(r.exit_code == 2);  // the flags contradict the checkpoint: a usage error
  CHECK(r.output.find("--epochs: given 3, the checkpoint has 2 (the cosine schedule anneals over all epochs") !=
        std::string::npos);
  r = run(with("--model lenet5") + "--resume " + out);
  CHECK(r.exit_code == 2);  // the flags contradict the checkpoint: a usage error
  CHECK(r.output.find("--model: given \"lenet5\", the checkpoint has ") != std::string::npos);
  r = run(args + "--resume " + out + " --seed 2");
  CHECK(r.exit_code == 2);  // the flags contradict the checkpoint: a usage error
  CHECK(r.output.find("--seed: given 2, the checkpoint has 1") != std::string::npos);
  r = run(args + "--resume " + out + " --init " + files[0]);
  CHECK(r.exit_code == 2);  // flags that contradict each other: a usage error
  CHECK(r.output.find("--resume and --init") != std::string::npos);
  // --init takes the weights into a new run with a fresh optimizer of another kind.
  r = run(train_args(tmp, "adam", 1) + "--init " + files[0] + " --out " + tmp / "fresh");
  CHECK(r.exit_code == 0);
  CHECK(read_checkpoint(tmp / "fresh/final.h5").optimizer_steps == 10);

  // A truncated newest checkpoint: --resume RUN_DIR warns and uses step 12; the run still ends as an
  // uninterrupted one does. Naming the truncated file is an error.
  fs::resize_file(files[0], fs::file_size(files[0]) / 3);
  r = run(args + "--resume " + files[0]);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("error: " + files[0]) != std::string::npos);
  r = run(args + "--resume " + out);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("warning: " + files[0]) != std::string::npos);
  CHECK(r.output.find("warning: resuming from the older " + files[1]) != std::string::npos);
  CHECK(r.output.find("at epoch 2 step 12") != std::string::npos);
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  check_same_state(tmp / "full/final.h5", out + "/final.h5");
  check_same_metrics(tmp / "full", out, 10);
}

TEST_CASE("resume: eval and predict accept a checkpoint from RUN_DIR/checkpoints") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string out = tmp / "run";
  REQUIRE(run(train_args(tmp, "sgd", 1) + "--out " + out + " --checkpoint-every 4").exit_code == 0);
  const std::string ckpt = (fs::path(out) / "checkpoints" / checkpoint_file_name(8)).string();
  REQUIRE(fs::exists(ckpt));
  auto r = run("eval --weights " + ckpt + " --data " + kMnist + " --limit 50 --json");
  CHECK(r.exit_code == 0);
  const json j = json::parse(test::last_line(r.output));
  CHECK(j["accuracy"].get<double>() >= 0.0);
  CHECK(j["confusion"].size() == 10);
  // A 28x28 grey PGM.
  {
    std::ofstream pgm(tmp / "digit.pgm", std::ios::binary);
    pgm << "P5\n28 28\n255\n";
    for (int i = 0; i < 28 * 28; ++i) pgm.put(static_cast<char>((i % 28 > 10 && i % 28 < 17) ? 255 : 0));
  }
  r = run("predict --weights " + ckpt + " " + tmp / "digit.pgm" + " --top 3");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("digit.pgm:") != std::string::npos);
}

TEST_CASE("resume: checkpoints that hit a full disk (RLIMIT_FSIZE) warn, the final one fails cleanly, old files stay") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string out = tmp / "run";
  auto args = [&](int epochs) {
    return "train --model lenet5 --data " + kMnist + " --limit-train 64 --limit-test 16 --batch 16 --schedule constant " +
           "--no-progress --checkpoint-every 2 --keep 5 --epochs " + std::to_string(epochs) + " ";
  };
  REQUIRE(run(args(1) + "--out " + out).exit_code == 0);
  const Checkpoint before = read_checkpoint(out + "/final.h5");
  // lenet5's checkpoints are 3.5 MB; the resumed process may write files of at most 1000 KiB, and ignores
  // SIGXFSZ so write() fails with EFBIG as it would with ENOSPC on a full disk.
  const std::string cmd = "bash -c \"trap '' XFSZ; ulimit -f 1000; " + std::string(STRIDE_BINARY) + " " + args(2) +
                          "--resume " + out + "\" 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = ::pclose(pipe);
  INFO(output);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);  // a clean error exit, not a crash
  CHECK(output.find("warning: " + out + "/checkpoints/step-000000006.h5: checkpoint not written (writing ") !=
        std::string::npos);
  CHECK(output.find("File too large); any earlier file is untouched; training continues") != std::string::npos);
  CHECK(output.find("error: " + out + "/checkpoints/step-000000008.h5: checkpoint not written") != std::string::npos);
  // The first run's checkpoints and final.h5 are intact, and no temporary is left anywhere.
  const auto files = CheckpointDir(out).list();
  REQUIRE(files.size() == 2);
  CHECK(fs::path(files[0]).filename() == checkpoint_file_name(4));
  CHECK(CheckpointDir(out).latest() == files[0]);
  check_all_checkpoints_load(out);
  check_same_state(out + "/final.h5", files[0], /*tiny_model=*/false);
  CHECK(read_checkpoint(out + "/final.h5").params.at("ip1/weight").values == before.params.at("ip1/weight").values);
  for (const auto& dir : {fs::path(out), fs::path(out) / "checkpoints"})
    for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

// Issue 18: restart scripts know only the run directory. PyTorch users keep a recipe in a script; stride keeps it
// in the checkpoint, as Caffe's snapshot keeps the solver state and `caffe train --snapshot` needs nothing else.
TEST_CASE("resume: --resume RUN_DIR alone continues with the checkpoint's settings, bitwise; process flags may differ") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  // Non-default settings throughout, so a default taken in place of a stored one would show.
  const std::string args = train_args(tmp, "sgd", 2, 160, "--seed 7 --schedule step --step-size 1 --gamma 0.5 "
                                                          "--augment crop-flip --micro-batch 8") +
                           "--nesterov --checkpoint-every 4 --keep 10 ";
  REQUIRE(run(args + "--out " + tmp / "full").exit_code == 0);
  for (const char* name : {"alone", "process-flags"}) {
    const std::string which = name;
    CAPTURE(which);
    const std::string out = tmp / which;
    REQUIRE(run(args + "--out " + out + " --stop-after-step 6").exit_code == 0);
    const std::string metrics_before = read_all(out + "/metrics.jsonl");
    const auto files_before = CheckpointDir(out).list();

    // A flag that changes the numbers: refused before anything is touched, every difference on its own line.
    auto r = run("train --resume " + out + " --lr 0.1 --momentum 0.5");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("cannot resume with settings that differ from the checkpoint's") != std::string::npos);
    CHECK(r.output.find("\n  --momentum: given 0.5, the checkpoint has 0.9\n  --lr: given 0.1, the checkpoint has 0.05") !=
          std::string::npos);
    CHECK(read_all(out + "/metrics.jsonl") == metrics_before);
    CHECK(CheckpointDir(out).list() == files_before);

    if (which == "alone") {
      r = run("train --resume " + out);
    } else {  // settings of the process, or that only say when to write: free to differ; the same flag value agrees
      r = run("train --resume " + out + " --threads 1 --progress lines --comm-timeout 60 --checkpoint-every 3 "
              "--keep 20 --lr 0.05 --data " + kMnist);
    }
    REQUIRE(r.exit_code == 0);
    check_same_state(tmp / "full/final.h5", out + "/final.h5", true, which != "alone");
    check_same_metrics(tmp / "full", out, 10);
    // The stored checkpoint cadence went on (4, 8, 12, 16, 20) unless it was given anew (3, 6, ...).
    const std::string want = which == "alone" ? checkpoint_file_name(12) : checkpoint_file_name(9);
    CHECK(fs::exists(fs::path(out) / "checkpoints" / want));
  }
}

TEST_CASE("resume: --checkpoint-minutes writes on cadence by a test clock, combined with --checkpoint-every; bits unchanged") {
  if (!have_data()) return;
  ResumeTempDir tmp;
  const std::string args = train_args(tmp, "sgd", 2) + "--checkpoint-epochs 0 --keep 100 ";
  REQUIRE(run(args + "--out " + tmp / "plain").exit_code == 0);
  // Each step counts as a minute: with --checkpoint-minutes 2 a checkpoint follows 2 steps after the last
  // one, whatever wrote it; --checkpoint-every 3 adds its own.
  const std::string out = tmp / "timed";
  const auto r = test::run_command("STRIDE_TEST_STEP_SECONDS=60 " + std::string(STRIDE_BINARY) + " " + args +
                                   "--checkpoint-minutes 2 --checkpoint-every 3 --out " + out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> want;
  for (int64_t step = 1, last = 0; step <= 20; ++step)
    if (step % 3 == 0 || step - last >= 2 || step == 20) {
      want.push_back(checkpoint_file_name(step));
      last = step;
    }
  std::vector<std::string> got;
  for (const auto& p : CheckpointDir(out).list()) got.insert(got.begin(), fs::path(p).filename().string());
  CHECK(got == want);  // 2, 3, 5, 6, 8, 9, 11, 12, ...
  // A checkpoint never depends on the clock for its content.
  check_same_state(tmp / "plain/final.h5", out + "/final.h5", true, /*cadence_may_differ=*/true);
  check_same_metrics(tmp / "plain", out, 10);
  // The real clock at the default (5 minutes) writes none in a run of seconds; 0 turns it off.
  CHECK(CheckpointDir(tmp / "plain").list().size() == 1);  // the end of the run only
}
