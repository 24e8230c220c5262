// `stride bench --comm`: what one step's gradient exchange costs at the running number of processes.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cluster/allreduce_algorithm.hpp"
#include "cluster/mpi_wait.hpp"
#include "cluster/session.hpp"
#include "framework/core/errors.hpp"
#include "framework/exact_sum.hpp"

namespace stride::cluster {

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

AllreduceTimes bench_allreduce(Session& session, int64_t elements, int repeats) {
  if (elements < 1 || repeats < 1) throw ConfigError("bench --comm: needs at least one element and one repeat");
  const int rank = session.active() ? session.rank() : 0, size = session.active() ? session.size() : 1;
  MPI_Comm comm = MPI_COMM_NULL;
  std::string algorithm;
  if (session.active()) {
    algorithm = detail::use_ring_allreduce();  // as the training's reducer does
    detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  }
  // A gradient-like buffer: one tensor, values of varied magnitude, different on every process.
  std::mt19937 gen(static_cast<uint32_t>(rank + 1));
  std::normal_distribution<float> normal(0.0f, 1e-2f);
  std::vector<float> grads(static_cast<size_t>(elements));
  for (float& g : grads) g = normal(gen);
  ExactSum sum({{0, elements}}, elements, elements);
  std::vector<int64_t> fixed(static_cast<size_t>(elements));
  std::vector<float> out(static_cast<size_t>(elements)), fsum(static_cast<size_t>(elements));
  std::vector<int32_t> exps(sum.max_segments()), agreed(sum.max_segments());

  auto barrier = [&] {
    if (comm == MPI_COMM_NULL) return;
    MPI_Request req;
    detail::enter_collective("bench barrier");
    detail::check(MPI_Ibarrier(comm, &req), "MPI_Ibarrier");
    detail::wait(req);
  };
  auto allreduce = [&](const void* in, void* result, int count, MPI_Datatype type, MPI_Op op) {
    if (comm == MPI_COMM_NULL) return;
    MPI_Request req;
    detail::enter_collective("bench allreduce");
    detail::check(MPI_Iallreduce(in, result, count, type, op, comm, &req), "MPI_Iallreduce");
    detail::wait(req);
  };
  std::vector<double> t_exact, t_convert, t_float;
  for (int r = 0; r < repeats + 1; ++r) {  // the first round warms up
    barrier();
    auto t0 = Clock::now();
    sum.begin_step(8, 1);
    sum.set_live(grads);
    sum.exponents(0, exps.data(), true);
    const size_t segs = sum.buckets()[0].segments.size();
    agreed = exps;
    allreduce(exps.data(), agreed.data(), static_cast<int>(segs), MPI_INT, MPI_MAX);
    const auto t1 = Clock::now();
    sum.to_fixed(0, agreed.data(), fixed.data(), true);
    const auto t2 = Clock::now();
    allreduce(MPI_IN_PLACE, fixed.data(), static_cast<int>(elements), MPI_INT64_T, MPI_SUM);
    const auto t3 = Clock::now();
    sum.from_fixed(0, agreed.data(), fixed.data(), out, true);
    const auto t4 = Clock::now();
    barrier();
    const auto t5 = Clock::now();
    allreduce(grads.data(), fsum.data(), static_cast<int>(elements), MPI_FLOAT, MPI_SUM);
    const auto t6 = Clock::now();
    if (r == 0) continue;
    auto sec = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    t_exact.push_back(sec(t0, t1) + sec(t2, t3));
    t_convert.push_back(sec(t1, t2) + sec(t3, t4));
    t_float.push_back(sec(t5, t6));
  }
  // Each repeat as long as its slowest process took: a step waits for the last process to have the sum. (The
  // processes do not finish together: a tree's root has the sum one message before its leaves, and a sender's
  // last message completes once the kernel has buffered it, not when it arrived.)
  for (std::vector<double>* t : {&t_exact, &t_convert, &t_float}) {
    if (comm == MPI_COMM_NULL) break;
    std::vector<double> slowest(t->size());
    allreduce(t->data(), slowest.data(), static_cast<int>(t->size()), MPI_DOUBLE, MPI_MAX);
    *t = slowest;
  }
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  AllreduceTimes times;
  times.reports = rank == 0;
  times.processes = size;
  times.elements = elements;
  times.exact = median(t_exact);
  times.exact_min = *std::min_element(t_exact.begin(), t_exact.end());
  times.convert = median(t_convert);
  times.float_sum = median(t_float);
  times.algorithm = algorithm;
  return times;
}

}  // namespace stride::cluster
