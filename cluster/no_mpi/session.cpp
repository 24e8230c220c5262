// cluster/session.hpp for a build without MPI (CMake found none): one process, always.
#include "cluster/session.hpp"

#include <cstdlib>
#include <iostream>
#include <unistd.h>

#include "framework/core/errors.hpp"

namespace stride::cluster {

namespace {
Session* g_current = nullptr;
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) throw ConfigError("started by an MPI launcher, but this stride was built without MPI");
  return false;
}

Session::Session(int&, char**&) {
  g_current = this;
  launched_by_mpi();
  char name[256] = {};
  hosts_ = {::gethostname(name, sizeof name - 1) == 0 ? name : "unknown"};
  default_threads_all_ = {0};
}
Session::~Session() { g_current = nullptr; }
Session& Session::current() {
  if (!g_current) throw Error("cluster: no Session (create one in main)");
  return *g_current;
}
int Session::default_threads() const { return 0; }
void Session::set_timeout(double seconds) { timeout_ = seconds; }
int Session::fail(const std::string& message, int code) {
  std::cerr << "error: " << message << "\n" << std::flush;
  return code;
}
CommProgress parse_comm_progress(const std::string& name) {
  if (name == "thread") return CommProgress::thread;
  if (name == "test") return CommProgress::test;
  if (name == "none") return CommProgress::none;
  throw ConfigError("--comm-progress: expected thread, test or none, got \"" + name + "\"");
}
std::unique_ptr<GradientReducer> make_data_parallel_reducer(Session&, const ReducerOptions&) {
  throw ConfigError("this stride was built without MPI");
}
AllreduceTimes bench_allreduce(Session&, int64_t, int) {
  throw ConfigError("stride bench --comm: this stride was built without MPI");
}

}  // namespace stride::cluster
