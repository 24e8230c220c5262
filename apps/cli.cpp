#include "apps/cli.hpp"

#include <cstdio>

#include "framework/errors.hpp"

namespace stride::app {

bool parse_options(int argc, char** argv, const po::options_description& options, po::variables_map& vm,
                   const std::string& usage, const po::positional_options_description* positional) {
  po::options_description all(options);
  all.add_options()("help,h", "show this help");
  try {
    auto parser = po::command_line_parser(argc, argv).options(all);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << all << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + " (see --help)");
  }
  return true;
}

std::string human_count(double value) {
  const char* units[] = {"", " K", " M", " G", " T"};
  int u = 0;
  while (value >= 1000.0 && u < 4) {
    value /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.1f%s", value, units[u]);
  return buf;
}

}  // namespace stride::app
