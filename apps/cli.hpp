#pragma once
// Small helpers shared by the subcommands.
#include <boost/program_options.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace stride::app {

namespace po = boost::program_options;

// Parses argv[1..] (argv[0] is the subcommand) into `vm`. Returns false after printing help for --help.
// Unknown options and bad values throw ConfigError naming the option.
// With allow_config, a "--config FILE" option's "key = value" lines fill the options the command line left
// unset (the options description must declare "config").
bool parse_options(int argc, char** argv, const po::options_description& options, po::variables_map& vm,
                   const std::string& usage, const po::positional_options_description* positional = nullptr,
                   bool allow_config = false);

// "fashion-mnist" or a comma-separated list of names.
std::vector<std::string> parse_class_names(const std::string& text);

// "24.7 M" style.
std::string human_count(double value);

}  // namespace stride::app
