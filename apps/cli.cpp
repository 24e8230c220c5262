#include "apps/cli.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "io/idx.hpp"

#include "framework/core/errors.hpp"

namespace stride::app {

bool parse_options(int argc, char** argv, const po::options_description& options, po::variables_map& vm,
                   const std::string& usage, const po::positional_options_description* positional,
                   bool allow_config) {
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
    if (allow_config && vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) throw ConfigError("--config: cannot read " + path);
      try {
        po::store(po::parse_config_file(in, options), vm);
      } catch (const po::error& e) {
        throw ConfigError(path + ": " + e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw ConfigError(std::string(e.what()) + " (see --help)");
  }
  return true;
}

std::vector<std::string> parse_class_names(const std::string& text) {
  if (text == "fashion-mnist") return fashion_mnist_class_names();
  std::vector<std::string> names;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) names.push_back(part);
  return names;
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
