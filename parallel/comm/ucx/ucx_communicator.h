// The UCX backend of Communicator (communicator.h) for CPU ranks: the project's own ring,
// recursive-doubling, tree and chain algorithms (algorithms.h) over UCP tagged messages,
// run asynchronously by a progress thread (engine.h). Owns nothing the interface does not
// describe; GPU ranks use the NCCL backend instead.
//
// Algorithms: AllReduce below options.small_bytes (or with fewer elements than ranks)
// uses recursive doubling, else the chunked ring (reduce-scatter + all-gather);
// ReduceScatter and AllGather the chunked ring; Broadcast a binomial tree below
// small_bytes, else a pipelined chain; AllToAll pairwise; Barrier dissemination.
//
// Transports: UCX chooses among those UCX_TLS allows (default: all). Between processes
// of one machine it uses shared memory (posix or sysv for small messages, cma — one
// process_vm_readv copy — for rendezvous of large ones); across machines tcp. Tested
// settings: unset (all), `UCX_TLS=sm,self` (one node) and `UCX_TLS=tcp,self` (loopback
// through TCP, as across nodes). cma needs ptrace permission between the ranks (same
// user; Yama ptrace_scope 0 or absent); without it UCX falls back to shared-memory copies.
// UCX reads UCX_* variables itself; this backend only shortens UCX's keepalive interval
// to min(1 s, timeout/4) so that a killed peer is reported within the timeout.
//
// Semantics beyond communicator.h:
//   * Collectives of one communicator run one at a time in issue order; Send and Recv
//     start at once and complete independently (either order of a Send/Recv pair works).
//   * Point-to-point tags must lie in [0, 2^26); sizes must match exactly.
//   * A failure (a dead peer, a timeout, Abort) fails the op and poisons its communicator:
//     every later op fails with the same error. A peer silent for `timeout` while an op
//     still has requests in flight to it is treated as failed by every communicator of
//     this process (its endpoint is force-closed).
//   * Split() communicators share the parent's worker, endpoints and progress thread; tags
//     carry a communicator id agreed among the members (greater than every id any of them
//     uses), so parent and children may run collectives concurrently.
//   * Destroying a communicator cancels its pending ops (their Wait() returns CANCELLED).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"

namespace colossal::parallel {

// Creates the world communicator of `bootstrap`'s ranks: exchanges UCX worker addresses
// through it, connects every pair of ranks and returns once all are connected (bounded by
// options.timeout). Collective over all ranks of the bootstrap.
absl::StatusOr<std::unique_ptr<Communicator>> CreateUcxCommunicator(Bootstrap& bootstrap,
                                                                    const CommOptions& options);

}  // namespace colossal::parallel
