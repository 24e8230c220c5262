#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>
#include <iostream>
#include <sstream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "cluster/session.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "framework/core/parallel.hpp"
#include "framework/trainer.hpp"

namespace stride::app {

namespace {

// Set by the first SIGTERM/SIGINT; the trainer polls it between steps, finishes the step and writes a
// checkpoint. A second signal means "now": the process exits at once with 128 + signal.
volatile std::sig_atomic_t stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (stop_signal != 0) {
    constexpr char msg[] = "\nstride: second signal, aborting without a checkpoint\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(128 + sig);
  }
  stop_signal = sig;
}

// Installs the handlers for the lifetime of a run and puts back the previous ones afterwards.
class StopSignals {
 public:
  StopSignals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // HDF5 and file writes continue after the handler returns
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

// Whether `arg` is `flag` with its value attached (`--threads=4` for `--threads`).
bool is_flag_with_value(std::string_view arg, std::string_view flag) {
  return arg.size() > flag.size() && arg.substr(0, flag.size()) == flag && arg[flag.size()] == '=';
}

// The command that continues this run: `stride train --resume RUN_DIR` and this launch's own flags, the ones
// a checkpoint does not store (threads, progress display, communication, memory limit). Every other setting
// comes from the checkpoint; repeating it would only give the continuation a way to disagree.
std::string resume_command(int argc, char** argv, const std::string& run_dir) {
  static constexpr std::string_view kLaunchFlags[] = {"--threads", "--progress", "--comm-timeout", "--comm-progress",
                                                      "--max-memory"};
  const auto quoted = [](const std::string& a) {
    const bool plain = a.find_first_of(" \t'\"$\\;&|<>()*?") == std::string::npos && !a.empty();
    if (plain) return a;
    std::string q = "'";
    q += a;
    q += "'";
    return q;
  };
  std::string cmd = "stride train --resume";
  const auto add = [&cmd, &quoted](const std::string& word) {
    cmd += ' ';
    cmd += quoted(word);
  };
  add(run_dir);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-progress") add(a);
    for (std::string_view flag : kLaunchFlags) {
      if (a == flag && i + 1 < argc) {
        add(a);
        add(argv[++i]);
        break;
      }
      if (is_flag_with_value(a, flag)) {
        add(a);
        break;
      }
    }
  }
  return cmd;
}

// Which of `flags` comes last on the command line ("" when none does): of two flags that contradict each
// other, the later one wins, as a repeated flag does.
std::string last_of(int argc, char** argv, std::initializer_list<std::string_view> flags) {
  for (int i = argc - 1; i > 0; --i)
    for (std::string_view f : flags) {
      const std::string_view a = argv[i];
      if (a == f || is_flag_with_value(a, f)) return std::string(f);
    }
  return "";
}

bool under_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (std::getenv(name)) return true;
  return false;
}

// --progress auto is a bar only on a terminal outside a launcher: under mpirun, rank 0's stdout is a
// pseudo-terminal even when mpirun's own output goes to a file, so a bar's carriage returns and ESC[K codes
// would land in the log (measured: `mpirun -np 2 stride train ... > run.log`).
ProgressDisplay progress_display(const std::string& text, bool no_progress) {
  if (no_progress || text == "none") return ProgressDisplay::none;
  if (text == "bar") return ProgressDisplay::bar;
  if (text == "lines") return ProgressDisplay::lines;
  if (text == "auto") return under_launcher() ? ProgressDisplay::lines : ProgressDisplay::automatic;
  throw UsageError("--progress: expected auto, bar, lines or none, got \"" + echo(text) + "\"");
}

}  // namespace

int train(int argc, char** argv) {
  TrainConfig c;
  int64_t threads = 0;
  double comm_timeout = 300;
  std::string config_file, milestones, classes, max_memory, comm_progress = "thread", progress = "auto",
              precision = "fp32";
  po::options_description opts("stride train options");
  opts.add_options()
      ("model,m", po::value(&c.model)->default_value(c.model), "zoo name (lenet5, cifar10_quick, resnet8, resnet20, mlp) or spec file")
      ("data,d", po::value(&c.data), "CIFAR-10 binary directory, IDX directory (MNIST, Fashion-MNIST) or HDF5 file")
      ("out,o", po::value(&c.out)->default_value(c.out), "run directory (metrics.jsonl, final.h5)")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "total number of epochs")
      ("batch", po::value(&c.batch)->default_value(c.batch), "batch size")
      ("micro-batch", po::value(&c.micro_batch)->default_value(c.micro_batch),
       "samples per micro-batch, the unit of work and of determinism: a step runs forward and backward over its "
       "micro-batches and sums their gradients exactly, so the result is the same for any number of processes "
       "(mpirun -np P) and threads; batch norm normalizes over each micro-batch. Must divide --batch. "
       "0 = 16 when 16 divides --batch, else the whole batch")
      ("bucket-mb", value_with_default(&c.bucket_mb),
       "with several processes: megabytes of (fixed-point) gradients per allreduce bucket; each starts as soon "
       "as backward has finished it")
      ("lr", value_with_default(&c.lr), "base learning rate")
      ("optimizer", po::value(&c.optimizer.kind)->default_value(c.optimizer.kind), "sgd | adam | adamw")
      ("momentum", value_with_default(&c.optimizer.momentum), "SGD momentum")
      ("nesterov", po::bool_switch(&c.optimizer.nesterov), "Nesterov momentum")
      ("weight-decay", value_with_default(&c.optimizer.weight_decay), "L2 weight decay (decoupled for adamw)")
      ("no-decay-bias-bn", po::bool_switch(), "do not decay biases and batch-norm scale/shift")
      ("beta1", value_with_default(&c.optimizer.beta1), "Adam beta1")
      ("beta2", value_with_default(&c.optimizer.beta2), "Adam beta2")
      ("schedule", po::value(&c.schedule.kind)->default_value("cosine"), "constant | step | multistep | cosine")
      ("step-size", po::value(&c.schedule.step_size)->default_value(0), "epochs between decays (step)")
      ("milestones", po::value(&milestones), "epochs at which to decay, e.g. 30,60 (multistep)")
      ("gamma", value_with_default(&c.schedule.gamma), "decay factor (step, multistep)")
      ("warmup-steps", po::value(&c.schedule.warmup_steps)->default_value(0), "linear warm-up iterations")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of every random choice (init, shuffle, augmentation, dropout)")
      ("precision", po::value(&precision)->default_value(precision),
       "fp32 | bf16: convolutions and linear layers on bf16 inputs and weights with fp32 sums; weights, "
       "optimizer, batch norm and loss stay fp32 (as torch.autocast). Bitwise the same on every CPU path, thread "
       "and process count. A resume may change it: the run continues from the fp32 weights and says so")
      ("threads", po::value(&threads)->default_value(0),
       "worker threads (0 = this process's cores: its CPU affinity mask, or under mpirun/srun the node's cores "
       "divided by the processes on the node)")
      ("augment", po::value(&c.augment)->default_value(c.augment), "none | crop-flip | auto (crop-flip for 3x32x32 data)")
      ("init", po::value(&c.init_weights), "start from the weights in this checkpoint, final.h5 or weights-only file (e.g. from scripts/torch_to_stride.py)")
      ("classes", po::value(&classes), "class names: fashion-mnist, or a comma-separated list")
      ("log-every", po::value(&c.log_every)->default_value(c.log_every), "steps between progress lines")
      ("limit-train", po::value(&c.limit_train)->default_value(0), "use only the first N training images")
      ("limit-test", po::value(&c.limit_test)->default_value(0), "use only the first N test images")
      ("progress", po::value(&progress)->default_value(progress),
       "how steps show on stdout between the epoch lines: bar (redrawn in place), lines (one every --log-every "
       "steps), none, or auto: a bar on a terminal, lines when stdout is a file or under mpirun/srun")
      ("no-progress", po::bool_switch(), "the same as --progress none")
      ("config", po::value(&config_file), "run config file (key = value lines with these option names)")
      ("resume", po::value(&c.resume),
       "continue the run in RUN_DIR (its newest good checkpoint) or from FILE.h5 with the checkpoint's settings "
       "(model, data, batch, epochs, optimizer, schedule, precision, seed, augmentation, checkpoint cadence...); "
       "flags given must agree with them where they change the numbers (--data may name another copy of the "
       "data; a larger --epochs extends a finished run unless the schedule is cosine); --threads, --progress and "
       "--comm-* are this process's own")
      ("overwrite", po::bool_switch(&c.overwrite), "replace the run already in --out (its metrics.jsonl, checkpoints/ and final.h5)")
      ("on-nan", po::value(&c.on_nan)->default_value(c.on_nan), "a NaN/Inf loss or gradient: stop (with the step and layer) | skip-batch (no update for that step)")
      ("max-memory", po::value(&max_memory), kMaxMemoryHelp)
      ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(0), "steps between checkpoints in RUN_DIR/checkpoints (0 = off)")
      ("checkpoint-epochs", po::value(&c.checkpoint_epochs)->default_value(1), "epochs between checkpoints (0 = off)")
      ("checkpoint-minutes", value_with_default(&c.checkpoint_minutes),
       "minutes of wall-clock time between checkpoints (0 = off), decided by rank 0's clock at a step boundary "
       "for every process, so a failure loses at most that much work. The triggers add up: a checkpoint is written "
       "when any of --checkpoint-every, --checkpoint-epochs or --checkpoint-minutes says so, and each one restarts "
       "the minutes. Results never depend on it")
      ("keep", po::value(&c.keep)->default_value(3), "checkpoints to keep in RUN_DIR/checkpoints")
      ("stop-after-step", po::value(&c.stop_after_step)->default_value(0), "act as if SIGTERM arrived after this global step (tests)")
      ("comm-timeout", value_with_default(&comm_timeout),
       "under mpirun/srun: seconds a collective may wait for the other processes before the job is aborted, "
       "naming the ranks that never arrived")
      ("comm-progress", po::value(&comm_progress)->default_value(comm_progress),
       "under mpirun/srun: how gradient allreduces advance during backward: thread (a communication thread), "
       "test (MPI_Test between layers) or none (all after backward)");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride train --model NAME|SPEC --data DIR|FILE.h5 [options]\n"
                     "       stride train --resume RUN_DIR|FILE.h5 [--data DIR|FILE.h5] [options]\n"
                     "       mpirun -np P stride train ...   (or srun --mpi=pmix stride train ...)\n"
                     "Trains on all cores; writes RUN_DIR/metrics.jsonl, checkpoints in RUN_DIR/checkpoints and\n"
                     "RUN_DIR/final.h5. SIGTERM or Ctrl-C finishes the step, writes a checkpoint and prints the resume\n"
                     "command; a second signal aborts at once. Layout and rules: docs/checkpoint.md.\n"
                     "Under mpirun/srun the P processes train one model data-parallel: each computes a contiguous\n"
                     "share of every step's micro-batches (--micro-batch, default 16) and the gradients are summed\n"
                     "exactly, so the weights are bitwise those of one process; rank 0 writes the output.\n"
                     "docs/cluster.md.",
                     nullptr, /*allow_config=*/true))
    return 0;
  c.optimizer.decay_all = !vm["no-decay-bias-bn"].as<bool>();
  // A resume takes every setting not given here from its checkpoint.
  if (!c.resume.empty()) {
    c.given.emplace();
    for (const auto& [name, value] : vm)
      if (!value.defaulted()) c.given->insert(name);
  }
  // Tests of --checkpoint-minutes: a clock that counts seconds per step instead of reading the wall clock.
  if (const char* s = std::getenv("STRIDE_TEST_STEP_SECONDS")) c.test_step_seconds = std::strtod(s, nullptr);
  c.progress = progress_display(progress, vm["no-progress"].as<bool>() && last_of(argc, argv, {"--progress", "--no-progress"}) != "--progress");
  try {
    c.precision = parse_precision(precision, "--precision");
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
  if (!milestones.empty()) {
    std::stringstream ss(milestones);
    std::string part;
    while (std::getline(ss, part, ',')) {
      try {
        c.schedule.milestones.push_back(std::stoll(part));
      } catch (const std::exception&) {
        throw UsageError("--milestones: expected comma-separated epochs, got \"" + echo(milestones) + "\"");
      }
    }
  }
  if (!classes.empty()) c.class_names = parse_class_names(classes);
  if (!(comm_timeout > 0)) throw UsageError("--comm-timeout: expected a positive number of seconds");
  cluster::Session& session = cluster::Session::current();
  const bool threads_per_launcher = threads == 0 && session.active();
  if (threads_per_launcher) threads = session.default_threads();
  std::unique_ptr<ThreadLimit> limit = limit_threads(threads);
  // run_config records every process's threads: with --threads 0 under a launcher, what each one's binding
  // gave it (a task bound to fewer cores than it was given shows there, not only in its speed).
  if (threads_per_launcher)
    for (int t : session.default_threads_of_all()) c.threads.push_back(t);
  else
    c.threads.assign(static_cast<size_t>(session.active() ? session.size() : 1), max_threads());
  apply_max_memory(max_memory);
  c.hosts = session.hosts();
  session.set_timeout(comm_timeout);
  std::unique_ptr<GradientReducer> reducer;
  if (session.active()) reducer = cluster::make_data_parallel_reducer(session, {cluster::parse_comm_progress(comm_progress)});
  const bool writes = !reducer || reducer->writes_output();

  // With --resume and no --out, the run continues in the checkpoint's run directory.
  if (!c.resume.empty() && vm["out"].defaulted()) c.out.clear();
  if (c.stop_after_step < 0) throw UsageError("--stop-after-step: expected >= 0");

  stop_signal = 0;
  StopSignals signals;
  c.stop_flag = &stop_signal;
  TrainResult r = reducer ? train(c, std::cout, *reducer) : train(c, std::cout);
  if (!writes) return 0;
  if (r.stopped) {
    std::cout << "stride: stopped at epoch " << r.stopped_epoch << " step " << r.steps << "; checkpoint "
              << r.checkpoint_path << "\n"
              << "stride: resume with: " << resume_command(argc, argv, r.run_dir) << "\n"
              << std::flush;
    return 0;
  }
  // Four decimals, as eval and the epoch lines print accuracies.
  char accuracy[32];
  std::snprintf(accuracy, sizeof accuracy, "%.4f", r.test_accuracy);
  std::cout << "test accuracy " << accuracy << "\n"
            << "model: " << r.final_path << "\n"
            << "metrics: " << r.metrics_path << "\n";
  return 0;
}

}  // namespace stride::app
