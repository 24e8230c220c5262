#pragma once
// One function per `stride` subcommand. Each parses its own options (Boost.Program_options, --help on every
// one) and returns the process exit code; errors are thrown and reported by main.
namespace stride::app {

int summary(int argc, char** argv);
int train(int argc, char** argv);
int eval(int argc, char** argv);
int predict(int argc, char** argv);
int convert(int argc, char** argv);
int bench(int argc, char** argv);
int export_model(int argc, char** argv);  // `stride export` (export is a C++ keyword)

}  // namespace stride::app
