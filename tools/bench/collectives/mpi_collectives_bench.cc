// The OpenMPI twin of the collectives benchmark: the same sweep (sweep.h) through
// MPI_Allreduce (in place), MPI_Reduce_scatter_block and MPI_Allgather. Run by
// collectives_bench under mpirun; prints "result ..." lines from rank 0. Each size is
// checked once for correct sums (sweep.h CheckResult) before it is timed; a wrong result
// aborts the run.
//   mpirun --allow-run-as-root --oversubscribe -np N --mca btl self,vader
//       mpi_collectives_bench [MAX_BYTES] [TARGET_SECONDS]   (one command line)
#define OMPI_SKIP_MPICXX 1
#include <openmpi/mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tools/bench/collectives/sweep.h"

namespace colossal::bench {
namespace {

void Call(Collective c, const float* send, float* recv, float* buf, int64_t count) {
  switch (c) {
    case Collective::kAllReduce:
      MPI_Allreduce(MPI_IN_PLACE, buf, static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      return;
    case Collective::kReduceScatter:
      MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                               MPI_COMM_WORLD);
      return;
    case Collective::kAllGather:
      MPI_Allgather(send, static_cast<int>(count), MPI_FLOAT, recv, static_cast<int>(count),
                    MPI_FLOAT, MPI_COMM_WORLD);
      return;
  }
}

int Main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const int64_t max_bytes = argc > 1 ? std::atoll(argv[1]) : int64_t{256} << 20;
  const double target_s = argc > 2 ? std::atof(argv[2]) : 0.25;
  std::vector<float> send(max_bytes / 4, 1.0f), recv(max_bytes / 4, 0.0f), buf(max_bytes / 4, 1.0f);
  for (Collective c : kCollectives) {
    for (int64_t bytes : Sizes(4096, max_bytes)) {
      const int64_t count = CountPerCall(c, bytes, n);
      // Correctness once, on rank-dependent inputs, then back to the timing inputs.
      FillForCheck(c, rank, n, count, send.data(), buf.data());
      Call(c, send.data(), recv.data(), buf.data(), count);
      const int64_t wrong = CheckResult(c, rank, n, count, recv.data(), buf.data());
      if (wrong >= 0) {
        std::fprintf(stderr, "OpenMPI %s, %d ranks, %lld bytes: rank %d wrong at element %lld\n",
                     Name(c), n, static_cast<long long>(bytes), rank,
                     static_cast<long long>(wrong));
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
      std::fill(send.begin(), send.end(), 1.0f);
      std::fill(buf.begin(), buf.begin() + count, 1.0f);
      for (int i = 0; i < 2; ++i) Call(c, send.data(), recv.data(), buf.data(), count);
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      Call(c, send.data(), recv.data(), buf.data(), count);
      double trial = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &trial, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      int iters = Iterations(trial, target_s);
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = MPI_Wtime();
      for (int i = 0; i < iters; ++i) Call(c, send.data(), recv.data(), buf.data(), count);
      double per_call = (MPI_Wtime() - t0) / iters;
      MPI_Allreduce(MPI_IN_PLACE, &per_call, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (rank == 0) PrintResult(stdout, c, n, bytes, per_call);
    }
  }
  MPI_Finalize();
  return 0;
}

}  // namespace
}  // namespace colossal::bench

int main(int argc, char** argv) { return colossal::bench::Main(argc, argv); }
