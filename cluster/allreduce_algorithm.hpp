#pragma once
// Which algorithm OpenMPI runs stride's non-blocking allreduces with (cluster/ only: it needs <mpi.h>).
//
// Every allreduce of stride is an MPI_Iallreduce, which OpenMPI 4.1 (Debian's) hands to coll/libnbc. libnbc's
// own choice (nbc_iallreduce.c) is a binomial tree whenever the call is MPI_IN_PLACE, as the gradient sums
// are, or there are fewer than 4 processes: up the tree to rank 0 and down again, the whole message on every
// level, 2 ceil(log2 N) messages of S bytes one after another. A ring moves 2 (N-1)/N S through each link.
// Measured on the testbed (docs/cluster.md, "The network model, measured"), 1.16 MB at 1 Gbit/s, time until
// the slowest process had the sum: 2 hosts 18.4 ms binomial, 9.5 ms ring; 3 hosts 38 ms and 14 ms.
// So stride asks libnbc for the ring, through MPI_T, once per process before its first allreduce: every
// process sets the same value, so they all run the same schedule. A value the user set
// (--mca coll_libnbc_iallreduce_algorithm, OMPI_MCA_... in the environment) is kept. Sums are of int64
// (exact) and MAX/LOR, so the algorithm cannot change a result.
#include <string>

namespace stride::cluster::detail {

// Sets libnbc's iallreduce algorithm to the ring unless the user chose one; returns what runs, for reports:
// "ring (stride's choice)", "binomial (set by the user)", or "the MPI library's choice" where the MPI is not
// OpenMPI's (no such control variable).
std::string use_ring_allreduce();

}  // namespace stride::cluster::detail
