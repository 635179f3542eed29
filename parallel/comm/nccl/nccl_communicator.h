// The NCCL backend of Communicator (communicator.h) for GPU ranks: one rank per device,
// every operation an NCCL call enqueued on the communicator's own CUDA streams. Owns the
// NCCL communicators, streams and events; does not own the buffers (device memory, or any
// memory NCCL accepts) nor the caller's streams. CPU ranks use the UCX backend instead.
//
// Bootstrap: rank 0 creates the NCCL unique ids and hands them to the others through
// the Bootstrap's AllGather (the coordinator's Rendezvous or a TCP store); every rank adds
// its NCCL version and its GPU's place (host, PCI bus id, kernel boot id), so different
// NCCL versions fail with FAILED_PRECONDITION and two ranks on one GPU with
// INVALID_ARGUMENT. Then every rank joins with ncclCommInitRankConfig on its device.
// Communicators are non-blocking NCCL communicators (config.blocking = 0), so joining,
// NCCL's lazy connection set-up and tear-down are all bounded by options.timeout.
//
// Streams and ordering (the part communicator.h leaves to the backend):
//   * Collectives run on one stream, in issue order; Send/Recv run on a second stream over
//     a second NCCL communicator of the same ranks, so they complete independently of the
//     collectives, as communicator.h requires. Both streams are created non-blocking with
//     respect to the legacy default stream and belong to `device`.
//   * Input: without SetComputeStream an operation waits for nothing on the device: the
//     caller makes its buffers ready first (e.g. synchronizes the stream that wrote them).
//     After SetComputeStream(s), every operation issued later first waits (on the device,
//     through an event) for all the work enqueued on `s` before the issuing call.
//   * Output: Wait() blocks the host until the operation is complete; StreamWaitFor(s, w)
//     instead makes stream `s` wait for it on the device, without blocking the host. Either
//     one allows the buffers to be reused (StreamWaitFor: by work enqueued on `s`). Only
//     Wait()/Done() report failures: after StreamWaitFor, still call Wait() to learn them.
//   * Send/Recv are launched lazily: they gather until the first Wait(), Done() or
//     StreamWaitFor() of any of them, then go to NCCL together in one group. So two ranks
//     that each issue Send then Recv to the other (both before waiting) never deadlock,
//     whatever the sizes; a Send whose Wait() comes before the peer issued the matching
//     Recv completes once the peer launches that Recv. Groups run one after another on the
//     send/recv stream: a rank that waits for a Send before issuing the Recv its peer's
//     Send needs can deadlock (until the timeout), as with blocking MPI sends.
//
// Semantics beyond communicator.h:
//   * AllReduce and ReduceScatter sum kF32 or kBF16 (NCCL accumulates bf16 in fp32 and
//     rounds once per hop); AllGather, Broadcast and AllToAll move any dtype. A count of
//     zero is a no-op that still completes in order.
//   * Barrier is an all-reduce of one float in a 1 KiB device scratch buffer the
//     communicator owns (from the stream-ordered allocator where the device has one).
//   * Point-to-point: NCCL has no tags. Messages between two ranks match in issue order:
//     the i-th Send from a to b meets b's i-th Recv from a. The tag must lie in [0, 2^31)
//     but is not sent or checked, and sizes must match exactly (NCCL does not check them
//     either: a mismatch corrupts data or hangs until the timeout).
//   * Failure: a Wait() that reaches options.timeout, an asynchronous NCCL error (a peer's
//     socket closed, a network error), an NCCL call's error (a non-blocking NCCL
//     communicator keeps even argument errors, so the usual bad arguments — negative
//     counts, null buffers, dtypes, roots, peers, tags — are refused before NCCL with
//     INVALID_ARGUMENT, which poisons nothing) or a CUDA error aborts the NCCL communicators
//     (ncclCommAbort) and poisons this communicator: the op and every later op fail with the
//     same error (DEADLINE_EXCEEDED, UNAVAILABLE or INTERNAL). Ops seen complete before the
//     failure still succeed. NCCL does not say which peer died or stalled, so the error
//     names every member's global rank instead. Abort(status) does the same with `status`.
//     A peer that died on the same node is usually not noticed by NCCL (shared memory,
//     NVLink): it shows up as the timeout.
//   * Blocking: issuing an operation normally returns at once, but the first operation that
//     needs a new NCCL connection may block the issuing thread until the peers issue theirs
//     (bounded by the timeout). Split() and creation block until done.
//   * Split(ranks): only the members call it (as communicator.h says), so it cannot be
//     ncclCommSplit, which every rank of the parent must call. The lowest member makes new
//     unique ids and sends them to the other members over the parent's collective stream
//     (ordered like a collective among the members; a member whose rank list differs from
//     the lowest member's fails with INVALID_ARGUMENT), then the members join a new NCCL
//     communicator pair. The child has its own streams, inherits the parent's compute
//     stream and options, and is independent of the parent afterwards.
//   * Destruction: pending Send/Recv not yet launched are cancelled (Wait(): CANCELLED). If
//     no operation is in flight the NCCL communicators are finalized (bounded by the
//     timeout), else aborted: in-flight ops then fail with CANCELLED. Works may outlive the
//     communicator.
// Thread safety: one thread issues operations; Wait(), Done(), StreamWaitFor() and Abort()
// may be called from any thread (every NCCL call is made under one mutex).
//
// This header compiles without CUDA. In a build without CUDA or NCCL (see
// third_party/cuda) CreateNcclCommunicator returns UNIMPLEMENTED.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"

// cudaStream_t is `CUstream_st*`; declared here so that the header needs no CUDA headers.
struct CUstream_st;

namespace colossal::parallel {

class NcclCommunicator : public Communicator {
 public:
  using CudaStream = CUstream_st*;  // cudaStream_t

  // The device (CUDA ordinal) of this rank.
  virtual int device() const = 0;

  // Orders every operation issued after this call after the work enqueued on `stream` (of
  // this communicator's device) before each issuing call. nullptr stops it. Issuing
  // thread only; Split() children start with the parent's stream.
  virtual absl::Status SetComputeStream(CudaStream stream) = 0;

  // Makes `stream` wait on the device until `work` (an operation of this communicator, not
  // yet destroyed) is complete; launches it first if it is a pending Send/Recv. Does not
  // report the op's failure (Wait() does). INVALID_ARGUMENT for a Work of another backend;
  // the communicator's error once it has failed.
  virtual absl::Status StreamWaitFor(CudaStream stream, Work& work) = 0;
};

// True when this build has the NCCL backend (CUDA and NCCL were found at build time).
bool NcclBackendBuilt();

// Creates the world communicator of `bootstrap`'s ranks on CUDA device `device` (the
// caller's choice, typically the local rank). Collective over all ranks of the bootstrap;
// bounded by options.timeout (plus the bootstrap's own bound for the id exchange). The
// result is an NcclCommunicator (dynamic_cast to reach SetComputeStream/StreamWaitFor),
// as are its Split() children. The calling thread's current device is left unchanged.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Bootstrap& bootstrap,
                                                                     const CommOptions& options,
                                                                     int device);

}  // namespace colossal::parallel
