#pragma once
// Small helpers shared by the subcommands.
#include <boost/program_options.hpp>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/parallel.hpp"

namespace stride::app {

namespace po = boost::program_options;

// Parses argv[1..] (argv[0] is the subcommand) into `vm`. Returns false after printing help for --help.
// Unknown options and bad values throw ConfigError naming the option.
// With allow_config, a "--config FILE" option's "key = value" lines fill the options the command line left
// unset (the options description must declare "config").
bool parse_options(int argc, char** argv, const po::options_description& options, po::variables_map& vm,
                   const std::string& usage, const po::positional_options_description* positional = nullptr,
                   bool allow_config = false);

// The exit code for an error that reached main: 2 for a UsageError (the command line is wrong), 1 for any other.
int exit_code(const std::exception& e);
// An error message as one line on stderr: control and non-ASCII bytes escaped, at most 2000 characters.
std::string one_line(const std::string& message);
// The same for a message whose lines were meant (a list of differences): each line escaped, the line breaks
// kept; at most 50 lines and 2000 characters in all.
std::string message_lines(const std::string& message);

// --threads N: nullptr for 0 (all cores); above the hardware's thread count it is capped there with a
// warning on stderr (more threads only add scratch buffers); negative is a UsageError.
std::unique_ptr<ThreadLimit> limit_threads(int64_t requested);

// --max-memory SIZE ("8G", "512M", bytes): sets memory_limit() for the run; empty keeps the default, half of
// physical memory.
void apply_max_memory(const std::string& text);
inline constexpr const char* kMaxMemoryHelp =
    "memory the run may plan to use (e.g. 8G, 512M; default: half of physical memory); larger plans are refused";

// Fuzzing the command line (fuzz/fuzz_cli.cpp): when set, parse_options throws ParsedOnly once the options
// are parsed and stored, so no command runs.
struct ParsedOnly {};
void set_parse_only(bool on);

// "fashion-mnist" or a comma-separated list of names.
std::vector<std::string> parse_class_names(const std::string& text);

// "24.7 M" style.
std::string human_count(double value);

// The shortest %g text that reads back as `value` ("0.9", "0.0005", "300"), so --help shows a default as it
// was typed instead of Boost's 17 significant digits ("0.90000000000000002").
std::string shortest_text(double value);
// po::value(v) with *v as its default, printed by shortest_text.
inline po::typed_value<double>* value_with_default(double* v) { return po::value(v)->default_value(*v, shortest_text(*v)); }

// "stride 0.1.0": what --version prints and --help names.
std::string version_line();

}  // namespace stride::app
