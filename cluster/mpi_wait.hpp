#pragma once
// Waiting on collectives without hanging (cluster/ only: it includes <mpi.h>). Every collective of stride is
// non-blocking and waited for here: the wait gives up after the session's timeout (--comm-timeout), asks the
// other processes which collective they are waiting in (a census over a communicator of its own), and aborts
// the job naming the processes that never arrived. While waiting, a process answers the census questions of
// the others.
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace stride::cluster::detail {

// Set up by Session: the census communicator and this process's rank and size.
void init_waits(MPI_Comm world, double timeout_seconds);
void set_wait_timeout(double seconds);
// Each rank's host name, so that a timeout names the host of a rank that never arrived.
void set_wait_hosts(const std::vector<std::string>& hosts);
void finish_waits();

// The main thread enters the next collective of the program; every process numbers them alike, because they
// all run the same collectives in the same order. `label` names it in a timeout message.
int64_t enter_collective(const std::string& label);

// Waits until done() is true (polled), as the main thread inside the collective it entered last; answers
// census questions meanwhile. On timeout: the census, a message, MPI_Abort.
void wait_until(const std::function<bool()>& done);
// The same for one request.
void wait(MPI_Request& request);

// Answers pending census questions (for threads that poll on their own).
void answer_census();

// A polite spin: yields for `spin_seconds`, then sleeps a little, then longer, so a process that waits long
// leaves the cores to the ones that compute (several processes often share a node's cores). A non-blocking
// collective of OpenMPI advances one round per MPI_Test, so the first phase must poll fast.
class Backoff {
 public:
  explicit Backoff(double spin_seconds = 0.005);
  void pause();

 private:
  std::chrono::steady_clock::time_point start_;
  double spin_;
};

// Throws Error naming the MPI call when `rc` is not MPI_SUCCESS.
void check(int rc, const char* call);

}  // namespace stride::cluster::detail
