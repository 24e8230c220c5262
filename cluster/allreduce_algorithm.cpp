#include "cluster/allreduce_algorithm.hpp"

#include <mpi.h>

#include <mutex>

namespace stride::cluster::detail {

namespace {

constexpr const char* kVariable = "coll_libnbc_iallreduce_algorithm";
// libnbc's values: 0 its own choice, 1 ring, 2 binomial, 3 rabenseifner, 4 recursive doubling.
constexpr int kOwnChoice = 0, kRing = 1;
const char* const kNames[] = {"libnbc's choice", "ring", "binomial", "rabenseifner", "recursive doubling"};

std::string choose() {
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return "the MPI library's choice";
  std::string result = "the MPI library's choice";
  int index = -1;
  if (MPI_T_cvar_get_index(kVariable, &index) == MPI_SUCCESS) {
    MPI_T_cvar_handle handle;
    int count = 0;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) == MPI_SUCCESS) {
      int value = -1;
      if (MPI_T_cvar_read(handle, &value) == MPI_SUCCESS) {
        if (value == kOwnChoice) {
          const int ring = kRing;
          if (MPI_T_cvar_write(handle, &ring) == MPI_SUCCESS) result = "ring (stride's choice)";
        } else if (value > 0 && value < 5) {
          result = std::string(kNames[value]) + " (set by the user)";
        }
      }
      MPI_T_cvar_handle_free(&handle);
    }
  }
  MPI_T_finalize();
  return result;
}

}  // namespace

std::string use_ring_allreduce() {
  static std::once_flag once;
  static std::string chosen;
  std::call_once(once, [] { chosen = choose(); });
  return chosen;
}

}  // namespace stride::cluster::detail
