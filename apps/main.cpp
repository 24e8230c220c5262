// The `stride` command: one binary, one subcommand per job.
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "apps/cli.hpp"
#include "apps/commands.hpp"

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
  };
  return table;
}

void usage(std::ostream& out) {
  out << "usage: stride COMMAND [OPTIONS]   (stride COMMAND --help for a command's options)\n\ncommands:\n";
  for (const auto& [name, cmd] : commands()) out << "  " << name << std::string(12 - name.size(), ' ') << cmd.help << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(std::cout);
    return 0;
  }
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::cerr << "error: unknown command '" << stride::app::one_line(name) << "'\n";
    usage(std::cerr);
    return 2;
  }
  // Every error ends here, once: one line on stderr, exit 2 for a usage error, 1 for anything else.
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory (an allocation failed that the memory plan did not foresee)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << stride::app::one_line(e.what()) << "\n";
    return stride::app::exit_code(e);
  } catch (...) {
    std::cerr << "error: unknown exception\n";
    return 1;
  }
}
