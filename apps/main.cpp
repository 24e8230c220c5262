// The `stride` command: one binary, one subcommand per job.
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "cluster/session.hpp"
#include "framework/core/errors.hpp"

namespace {

struct Command {
  int (*run)(int, char**);
  const char* help;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table = {
      {"summary", {stride::app::summary, "layer table with shapes, parameter counts and FLOPs"}},
      {"train", {stride::app::train, "train a model on CIFAR-10, MNIST-style IDX or HDF5 data"}},
      {"eval", {stride::app::eval, "accuracy, per-class accuracy and confusion matrix of trained weights"}},
      {"predict", {stride::app::predict, "top classes for PNG/PPM/PGM images"}},
      {"bench", {stride::app::bench, "training throughput on random data, optionally per layer"}},
      {"convert", {stride::app::convert, "convert CIFAR-10 or IDX files to one HDF5 dataset"}},
      {"export", {stride::app::export_model, "trained weights as an ONNX model (docs/export.md)"}},
  };
  return table;
}

void usage(std::ostream& out) {
  out << stride::app::version_line() << ": train CNNs on CPUs\n\n"
      << "usage: stride COMMAND [OPTIONS]   (stride COMMAND --help for a command's options)\n"
      << "       stride --version\n\ncommands:\n";
  for (const auto& [name, cmd] : commands()) out << "  " << name << std::string(12 - name.size(), ' ') << cmd.help << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  // MPI starts only under a launcher (mpirun, srun); its errors print "rank R: error: ..." and end the job.
  std::unique_ptr<stride::cluster::Session> session;
  try {
    session = std::make_unique<stride::cluster::Session>(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::cout << stride::app::version_line() << "\n";
    return 0;
  }
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::cerr << "error: unknown command '" << stride::app::one_line(name) << "'\n";
    usage(std::cerr);
    return 2;
  }
  // Every error ends here, once, on stderr (a message of several lines, such as the settings a resume
  // contradicts, as lines): exit 2 for a usage error, 1 for anything else.
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::bad_alloc&) {
    return session->fail("out of memory (an allocation failed that the memory plan did not foresee)", 1);
  } catch (const std::exception& e) {
    return session->fail(stride::app::message_lines(e.what()), stride::app::exit_code(e));
  } catch (...) {
    return session->fail("unknown exception", 1);
  }
}
