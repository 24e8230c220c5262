#include "apps/cli.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <new>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"
#include "io/file_limits.hpp"
#include "io/idx.hpp"

namespace stride::app {

namespace {
bool parse_only = false;
// PATH_MAX: no flag value or config line of stride needs more.
constexpr size_t kMaxArgumentBytes = 4096;

// Boost.Program_options fills its error messages by replacing "%canonical_option%", "%value%" and the like
// until none is left, so a token that contains one loops forever (found by fuzz_run_config). Such tokens are
// refused before Boost sees them.
bool has_placeholder(std::string_view text) {
  for (size_t i = text.find('%'); i != std::string_view::npos; i = text.find('%', i + 1)) {
    size_t j = i + 1;
    while (j < text.size() && ((text[j] >= 'a' && text[j] <= 'z') || text[j] == '_')) ++j;
    if (j > i + 1 && j < text.size() && text[j] == '%') return true;
  }
  return false;
}
// Later flags override earlier ones, as on most command lines: `stride train ... --epochs 5 --epochs 30` trains
// 30 epochs, so a wrapper (scripts/main-job.sh, cluster/slurm/train.sbatch) can pass its defaults first and
// the user's arguments after them. Of an option that takes one value only the last occurrence is kept;
// options that collect values (predict's images) keep them all.
void keep_last_occurrences(po::parsed_options& parsed) {
  std::vector<po::option> kept;
  std::set<std::string> seen;
  for (auto it = parsed.options.rbegin(); it != parsed.options.rend(); ++it) {
    const po::option_description* d =
        it->string_key.empty() ? nullptr : parsed.description->find_nothrow(it->string_key, false);
    const bool single = d && !d->semantic()->is_composing() && d->semantic()->max_tokens() <= 1;
    if (single && it->position_key < 0 && !seen.insert(it->string_key).second) continue;
    kept.push_back(*it);
  }
  parsed.options.assign(kept.rbegin(), kept.rend());
}
}  // namespace

void set_parse_only(bool on) { parse_only = on; }

int exit_code(const std::exception& e) { return dynamic_cast<const UsageError*>(&e) ? 2 : 1; }

std::string one_line(const std::string& message) { return echo(message, 2000); }

std::string message_lines(const std::string& message) {
  std::string out;
  size_t start = 0, lines = 0;
  while (start <= message.size() && out.size() < 2000 && lines < 50) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    if (lines++ > 0) out.push_back('\n');
    out.append(echo(std::string_view(message).substr(start, end - start), 2000 - out.size()));
    start = end + 1;
  }
  if (start < message.size()) out += "\n... (" + std::to_string(message.size()) + " bytes in all)";
  return out;
}

std::unique_ptr<ThreadLimit> limit_threads(int64_t requested) {
  if (requested < 0) throw UsageError("--threads: expected >= 0, got " + std::to_string(requested));
  if (requested == 0) return nullptr;
  const auto hardware = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (requested > hardware) {
    std::cerr << "warning: --threads " << requested << ": this machine has " << hardware
              << " hardware threads; using " << hardware << "\n";
    requested = hardware;
  }
  return std::make_unique<ThreadLimit>(static_cast<int>(requested));
}

void apply_max_memory(const std::string& text) {
  if (!text.empty()) set_memory_limit(parse_byte_size(text, "--max-memory"));
}

bool parse_options(int argc, char** argv, const po::options_description& options, po::variables_map& vm,
                   const std::string& usage, const po::positional_options_description* positional,
                   bool allow_config) {
  po::options_description all(options);
  all.add_options()("help,h", "show this help");
  // No argument is longer than a path may be: Boost's error messages substitute long tokens in quadratic
  // time (found by fuzz_run_config), and nothing stride takes needs more.
  for (int i = 1; i < argc; ++i)
    if (std::strlen(argv[i]) > kMaxArgumentBytes)
      throw UsageError("argument " + std::to_string(i) + " is " + std::to_string(std::strlen(argv[i])) +
                       " bytes, over the limit of " + std::to_string(kMaxArgumentBytes) + ": " + echo(argv[i], 60));
    else if (has_placeholder(argv[i]))
      throw UsageError("argument " + std::to_string(i) + " \"" + echo(argv[i]) +
                       "\" holds a %name% sequence, which the option parser cannot report");
  try {
    auto parser = po::command_line_parser(argc, argv).options(all);
    if (positional) parser.positional(*positional);
    po::parsed_options parsed = parser.run();
    keep_last_occurrences(parsed);
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << all << "\n";
      return false;
    }
    if (allow_config && vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      // A regular file of at most 1 MiB of text: a directory, a device or a binary file is an error, never
      // silently an empty config.
      const std::string text = read_text_file(path, "--config", int64_t{1} << 20);
      if (const auto nul = text.find('\0'); nul != std::string::npos)
        throw IoError("--config " + path + ": not a text file (a NUL byte at offset " + std::to_string(nul) + ")");
      size_t line_start = 0, line_number = 1;
      for (size_t i = 0; i <= text.size(); ++i) {
        if (i < text.size() && text[i] != '\n') continue;
        if (i - line_start > kMaxArgumentBytes)
          throw IoError("--config " + path + ": line " + std::to_string(line_number) + " is " +
                        std::to_string(i - line_start) + " bytes, over the limit of " +
                        std::to_string(kMaxArgumentBytes));
        if (has_placeholder(std::string_view(text).substr(line_start, i - line_start)))
          throw IoError("--config " + path + ": line " + std::to_string(line_number) +
                        " holds a %name% sequence, which the option parser cannot report");
        line_start = i + 1;
        ++line_number;
      }
      std::istringstream in(text);
      try {
        po::store(po::parse_config_file(in, options), vm);
      } catch (const po::error& e) {
        throw UsageError(path + ": " + echo(e.what(), 400));
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(echo(e.what(), 400) + " (see --help)");
  }
  if (parse_only) throw ParsedOnly{};
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

std::string shortest_text(double value) {
  char buf[64];
  // Whole numbers in full (300, not %g's 3e+02); else %g, as people write numbers (0.0005 rather than 5e-04),
  // with the fewest digits that read back exactly.
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

std::string version_line() { return std::string("stride ") + STRIDE_VERSION; }

}  // namespace stride::app
