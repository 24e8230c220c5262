#include "cluster/mpi_wait.hpp"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "framework/core/errors.hpp"

namespace stride::cluster::detail {

namespace {

constexpr int kAskTag = 7001, kReplyTag = 7002;
constexpr double kCensusSeconds = 5.0;  // how long a census waits for answers

MPI_Comm g_census = MPI_COMM_NULL;
int g_rank = 0, g_size = 1;
double g_timeout = 300;
int64_t g_sequence = -1;                 // the main thread's current collective
std::string g_label;
std::vector<std::string> g_hosts;         // host name of each rank, once gathered (for the timeout message)
std::atomic<int64_t> g_waiting{-1};      // the collective the main thread waits in now, -1 when not waiting

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream out;
  // With each rank's host: after a cut link or a dead node the host is what a person must look at.
  for (size_t i = 0; i < ranks.size(); ++i) {
    out << (i ? ", " : "") << ranks[i];
    if (static_cast<size_t>(ranks[i]) < g_hosts.size()) out << " (" << g_hosts[static_cast<size_t>(ranks[i])] << ")";
  }
  return out.str();
}

[[noreturn]] void census_and_abort(int64_t sequence, const std::string& label) {
  // Ask everyone which collective they wait in; the ones that answer with ours have arrived.
  const int64_t ask = sequence;
  std::vector<MPI_Request> sends;
  for (int r = 0; r < g_size; ++r) {
    if (r == g_rank) continue;
    sends.emplace_back();
    MPI_Isend(&ask, 1, MPI_INT64_T, r, kAskTag, g_census, &sends.back());
  }
  std::vector<int64_t> answer(static_cast<size_t>(g_size), -2);  // -2: no answer
  answer[static_cast<size_t>(g_rank)] = sequence;
  int answered = 1;
  const auto start = Clock::now();
  Backoff backoff;
  while (answered < g_size && seconds_since(start) < kCensusSeconds) {
    answer_census();
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, kReplyTag, g_census, &flag, &msg, &status);
    if (flag) {
      int64_t v = -2;
      MPI_Mrecv(&v, 1, MPI_INT64_T, &msg, MPI_STATUS_IGNORE);
      if (answer[static_cast<size_t>(status.MPI_SOURCE)] == -2) ++answered;
      answer[static_cast<size_t>(status.MPI_SOURCE)] = v;
    } else {
      backoff.pause();
    }
  }
  std::vector<int> missing, silent, elsewhere, arrived;
  for (int r = 0; r < g_size; ++r) {
    const int64_t a = answer[static_cast<size_t>(r)];
    if (a == sequence) {
      arrived.push_back(r);
      continue;
    }
    missing.push_back(r);
    (a == -2 ? silent : elsewhere).push_back(r);
  }
  // The lowest process that arrived reports; the others give it a moment, then abort too.
  if (arrived.front() == g_rank) {
    std::ostringstream msg;
    msg << "rank " << g_rank << ": error: " << label << " did not finish within " << g_timeout << " s: "
        << (missing.size() == 1 ? "rank " : "ranks ") << rank_list(missing) << " never arrived";
    if (!silent.empty()) msg << " (no answer from " << rank_list(silent) << ": computing or stuck)";
    if (!elsewhere.empty()) msg << " (" << rank_list(elsewhere) << (elsewhere.size() == 1 ? " is" : " are") << " not in a collective)";
    msg << "; aborting the job (--comm-timeout)\n";
    std::cerr << msg.str() << std::flush;
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

}  // namespace

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(call) + " failed: " + std::string(text, static_cast<size_t>(len)));
}

Backoff::Backoff(double spin_seconds) : start_(Clock::now()), spin_(spin_seconds) {}

void Backoff::pause() {
  const double waited = seconds_since(start_);
  if (waited < spin_) sched_yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 500));
}

void init_waits(MPI_Comm world, double timeout_seconds) {
  MPI_Comm_rank(world, &g_rank);
  MPI_Comm_size(world, &g_size);
  check(MPI_Comm_dup(world, &g_census), "MPI_Comm_dup");
  g_timeout = timeout_seconds;
}

void set_wait_timeout(double seconds) { g_timeout = seconds; }

void set_wait_hosts(const std::vector<std::string>& hosts) { g_hosts = hosts; }

void finish_waits() {
  if (g_census != MPI_COMM_NULL) MPI_Comm_free(&g_census);
}

int64_t enter_collective(const std::string& label) {
  g_label = label;
  return ++g_sequence;
}

void answer_census() {
  if (g_census == MPI_COMM_NULL) return;
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, kAskTag, g_census, &flag, &msg, &status);
    if (!flag) return;
    int64_t asked = 0;
    MPI_Mrecv(&asked, 1, MPI_INT64_T, &msg, MPI_STATUS_IGNORE);
    // Non-blocking, so answering never waits; each asker's value stays in place until its send is done (one
    // question per asker and census).
    static std::vector<int64_t> replies(static_cast<size_t>(g_size));
    int64_t& reply = replies[static_cast<size_t>(status.MPI_SOURCE)];
    reply = g_waiting.load();
    MPI_Request req;
    MPI_Isend(&reply, 1, MPI_INT64_T, status.MPI_SOURCE, kReplyTag, g_census, &req);
    MPI_Request_free(&req);
  }
}

void wait_until(const std::function<bool()>& done) {
  if (done()) return;
  g_waiting = g_sequence;
  const auto start = Clock::now();
  Backoff backoff;
  int64_t polls = 0;
  while (!done()) {
    if (++polls % 16 == 0) {
      answer_census();
      if (seconds_since(start) > g_timeout) census_and_abort(g_sequence, g_label);
    }
    backoff.pause();
  }
  g_waiting = -1;
}

void wait(MPI_Request& request) {
  wait_until([&] {
    int flag = 0;
    check(MPI_Test(&request, &flag, MPI_STATUS_IGNORE), "MPI_Test");
    return flag != 0;
  });
}

}  // namespace stride::cluster::detail
