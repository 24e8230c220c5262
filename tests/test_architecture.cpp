// The levels of the program (docs/design.md), checked on the source tree itself:
//
//   framework/core/  <-  layers/, io/  <-  framework/  <-  cluster/  <-  apps/
//
// A file may include its own level and the levels below it, never one above it or beside it (layers/ and io/
// know nothing of each other). Third-party headers belong to one level each: TBB and the x86 intrinsics to
// framework/core/, HDF5, zlib and libpng to io/, ONNX and protobuf to framework/, MPI to cluster/,
// Boost.Program_options to apps/. The CMake libraries (stride_core, stride_layers, ...) link in the same order,
// so a violation would usually fail to link too; this test names the file and line instead.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

enum class Level { core, layers, io, framework, cluster, apps, unknown };

const char* level_name(Level l) {
  static const char* names[] = {"framework/core", "layers", "io", "framework", "cluster", "apps", "unknown"};
  return names[static_cast<int>(l)];
}

// The level of a path relative to the repository root ("framework/core/tensor.hpp" -> core).
Level level_of(const std::string& path) {
  auto starts = [&](const char* prefix) { return path.rfind(prefix, 0) == 0; };
  if (starts("framework/core/")) return Level::core;
  if (starts("framework/")) return Level::framework;
  if (starts("layers/")) return Level::layers;
  if (starts("io/")) return Level::io;
  if (starts("cluster/")) return Level::cluster;
  if (starts("apps/")) return Level::apps;
  return Level::unknown;
}

bool may_include(Level from, Level to) {
  static const std::map<Level, std::set<Level>> allowed = {
      {Level::core, {Level::core}},
      {Level::layers, {Level::core, Level::layers}},
      {Level::io, {Level::core, Level::io}},
      {Level::framework, {Level::core, Level::layers, Level::io, Level::framework}},
      {Level::cluster, {Level::core, Level::layers, Level::io, Level::framework, Level::cluster}},
      {Level::apps, {Level::core, Level::layers, Level::io, Level::framework, Level::cluster, Level::apps}},
  };
  auto it = allowed.find(from);
  return it != allowed.end() && it->second.count(to) > 0;
}

// The one level that may include a third-party header, by the header's leading path; none for the rest.
std::optional<Level> owner_of_system_header(const std::string& header) {
  static const std::vector<std::pair<std::string, Level>> owners = {
      {"tbb/", Level::core},          {"oneapi/tbb", Level::core}, {"immintrin.h", Level::core},
      {"cpuid.h", Level::core},
      {"hdf5", Level::io},            {"H5", Level::io},           {"zlib.h", Level::io},
      {"png.h", Level::io},           {"mpi.h", Level::cluster},   {"boost/", Level::apps},
      {"onnx/", Level::framework},    {"google/protobuf", Level::framework},
  };
  for (const auto& [prefix, level] : owners)
    if (header.rfind(prefix, 0) == 0) return level;
  return std::nullopt;
}

// Every include of the tree under `root` that breaks the order, as "file:line: ...".
std::vector<std::string> include_violations(const fs::path& root) {
  static const std::regex include_line(R"(^\s*#\s*include\s*([<"])([^>"]+)[>"])");
  std::vector<std::string> out;
  for (const char* top : {"framework", "layers", "io", "cluster", "apps"}) {
    if (!fs::is_directory(root / top)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".cpp" && ext != ".hpp" && ext != ".h")) continue;
      const std::string file = fs::relative(entry.path(), root).generic_string();
      const Level from = level_of(file);
      std::ifstream in(entry.path());
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        std::smatch m;
        if (!std::regex_search(line, m, include_line)) continue;
        const std::string target = m[2];
        const std::string where = file + ":" + std::to_string(number) + ": ";
        if (m[1] == "\"") {
          const Level to = level_of(target);
          if (to == Level::unknown)
            out.push_back(where + "includes \"" + target + "\", which is in no level of the program");
          else if (!may_include(from, to))
            out.push_back(where + "includes \"" + target + "\": " + level_name(from) + "/ may not include " +
                          level_name(to) + "/ (it is above or beside it)");
        } else if (auto owner = owner_of_system_header(target); owner && *owner != from) {
          out.push_back(where + "includes <" + target + ">, which only " + level_name(*owner) + "/ may use");
        }
      }
    }
  }
  return out;
}

// Every call in the program's code that makes a child process by duplicating this one (fork, vfork, and
// popen and system, which fork underneath), as "file:line: ...". stride runs TBB workers, a communication
// thread and MPI: a forked child of such a process may deadlock on a lock another thread held (issue 16).
std::vector<std::string> fork_calls(const fs::path& root) {
  static const std::regex call(R"((^|[^A-Za-z0-9_])(fork|vfork|popen|system)\s*\()");
  std::vector<std::string> out;
  for (const char* top : {"framework", "layers", "io", "cluster", "apps"}) {
    if (!fs::is_directory(root / top)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".cpp" && ext != ".hpp" && ext != ".h")) continue;
      std::ifstream in(entry.path());
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        const std::string code = line.substr(0, line.find("//"));
        std::smatch m;
        if (std::regex_search(code, m, call))
          out.push_back(fs::relative(entry.path(), root).generic_string() + ":" + std::to_string(number) + ": calls " +
                        m[2].str() + "()");
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("every #include of the tree points down the levels core <- layers, io <- framework <- cluster <- apps") {
  const auto violations = include_violations(STRIDE_REPO_DIR);
  for (const auto& v : violations) FAIL_CHECK(v);
  CHECK(violations.empty());
}

TEST_CASE("the include check names the file and line of an upward, sideways or foreign include") {
  stride::test::TempDir dir("architecture");
  auto write = [&](const std::string& rel, const std::string& text) {
    fs::create_directories((dir.path / rel).parent_path());
    std::ofstream(dir.path / rel) << text;
  };
  write("framework/core/tensor.hpp", "#pragma once\n#include \"framework/core/shape.hpp\"\n");
  write("framework/core/shape.cpp", "#include <vector>\n\n#include \"framework/network.hpp\"\n");
  write("layers/conv2d.cpp", "#include \"framework/core/tensor.hpp\"\n#include \"io/checkpoint.hpp\"\n");
  write("io/checkpoint.cpp", "#include <hdf5.h>\n#include \"framework/core/errors.hpp\"\n");
  write("framework/trainer.cpp", "  #  include <hdf5.h>\n#include \"layers/relu.hpp\"\n#include \"apps/cli.hpp\"\n");
  write("apps/main.cpp", "#include \"cluster/mpi_reducer.hpp\"\n#include \"tests/helpers.hpp\"\n");
  const auto v = include_violations(dir.path);
  CHECK(std::set<std::string>(v.begin(), v.end()) ==
        std::set<std::string>{
                    "apps/main.cpp:2: includes \"tests/helpers.hpp\", which is in no level of the program",
                    "framework/core/shape.cpp:3: includes \"framework/network.hpp\": framework/core/ may not include "
                    "framework/ (it is above or beside it)",
                    "framework/trainer.cpp:1: includes <hdf5.h>, which only io/ may use",
                    "framework/trainer.cpp:3: includes \"apps/cli.hpp\": framework/ may not include apps/ (it is above "
                    "or beside it)",
                    "layers/conv2d.cpp:2: includes \"io/checkpoint.hpp\": layers/ may not include io/ (it is above or "
                    "beside it)"});
}

TEST_CASE("no fork(), vfork(), popen() or system() in the program's code") {
  const auto calls = fork_calls(STRIDE_REPO_DIR);
  for (const auto& c : calls) FAIL_CHECK(c);
  CHECK(calls.empty());
  // The check finds each of them, and not the words in comments or other names.
  stride::test::TempDir dir("architecture");
  fs::create_directories(dir.path / "io");
  std::ofstream(dir.path / "io/reader.cpp") << "void f() {\n  const pid_t pid = ::fork();\n"
                                               "  // fork() in a comment\n  refork(1);\n  std::system(\"ls\");\n"
                                               "  FILE* p = popen (\"x\", \"r\");\n}\n";
  const auto found = fork_calls(dir.path);
  CHECK(found == std::vector<std::string>{"io/reader.cpp:2: calls fork()", "io/reader.cpp:5: calls system()",
                                          "io/reader.cpp:6: calls popen()"});
}
