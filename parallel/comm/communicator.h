// Communicator: the collective layer every form of parallelism stands on. One
// interface, two backends: UCX for CPU ranks (ucx/), NCCL for GPU ranks (nccl/).
//
// Semantics (all ranks of the communicator call a collective in the same order with
// the same count and dtype; buffers are host memory for UCX, device memory for NCCL):
//   AllReduce      buf[count] ← Σ over ranks of buf[count]                 (in place)
//   ReduceScatter  recv[count] ← Σ over ranks of send[rank·count ...]      (send holds size·count)
//   AllGather      recv[size·count] ← concatenation by rank of send[count]
//   Broadcast      buf[count] ← root's buf[count]
//   AllToAll       recv[r·count ...] ← rank r's send[this_rank·count ...]
//   Send / Recv    point to point, matched by (peer, tag), bytes
//   Barrier
// Sums are over kF32 or kBF16 elements (bf16 sums accumulate in fp32 per hop and round
// once per hop). Every call is asynchronous: it returns a Work at once; buffers must stay
// valid and untouched until Wait() returns. Collectives complete in issue order; Send and
// Recv start at once and complete independently of each other and of collectives (so two
// ranks may each issue Send then Recv to the other without deadlock).
//
// Failure: every Wait() is bounded by the communicator's timeout; a dead or silent peer
// makes Wait() return an error naming the peer (UNAVAILABLE / DEADLINE_EXCEEDED), never
// a hang. Abort(status) fails every pending and later operation with `status`.
// Thread safety: one thread issues operations; Wait() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/common/kernel.h"

namespace colossal::parallel {

using kernels::DType;

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the operation completes or fails (bounded by the timeout).
  virtual absl::Status Wait() = 0;
  // Non-blocking completion check.
  virtual bool Done() = 0;
};

// A Work complete from the start with `status`: a call rejected before it began, or a
// backend that finishes the operation inside the call.
class DoneWork : public Work {
 public:
  explicit DoneWork(absl::Status status) : status_(std::move(status)) {}
  absl::Status Wait() override { return status_; }
  bool Done() override { return true; }

 private:
  absl::Status status_;
};

struct CommOptions {
  std::chrono::milliseconds timeout{60000};  // bound of every Wait()
  int64_t chunk_bytes = 1 << 20;             // pipelining granularity of ring algorithms
  // Below this many bytes, all-reduce uses a latency-optimal algorithm (tree / recursive
  // doubling) instead of the bandwidth-optimal ring.
  int64_t small_bytes = 64 << 10;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Global ranks of the members, indexed by this communicator's rank (for messages).
  virtual const std::vector<int>& global_ranks() const = 0;

  virtual std::unique_ptr<Work> AllReduce(void* buf, int64_t count, DType dtype) = 0;
  virtual std::unique_ptr<Work> ReduceScatter(const void* send, void* recv, int64_t count,
                                              DType dtype) = 0;
  virtual std::unique_ptr<Work> AllGather(const void* send, void* recv, int64_t count,
                                          DType dtype) = 0;
  virtual std::unique_ptr<Work> Broadcast(void* buf, int64_t count, DType dtype, int root) = 0;
  virtual std::unique_ptr<Work> AllToAll(const void* send, void* recv, int64_t count,
                                         DType dtype) = 0;
  virtual std::unique_ptr<Work> Send(const void* buf, int64_t bytes, int peer, int tag) = 0;
  virtual std::unique_ptr<Work> Recv(void* buf, int64_t bytes, int peer, int tag) = 0;
  virtual std::unique_ptr<Work> Barrier() = 0;

  // A communicator over `ranks` (in this communicator's numbering, ascending; the caller
  // must be a member). Collective over the members: each calls it with the same list.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::vector<int>& ranks) = 0;

  virtual void Abort(const absl::Status& status) = 0;

  // Payload bytes this rank has sent over this communicator (collectives, Send) since it
  // was created: what its algorithms put on the wire (a ring all-reduce of n bytes over
  // P ranks sends 2(P−1)/P·n). Control messages (Split, wire-up, barriers) do not count.
  // A backend that moves nothing itself (in-process, NCCL) counts the ring algorithms'
  // figures (SentByRing). Any thread.
  virtual int64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }

 protected:
  void CountSent(int64_t bytes) { bytes_sent_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> bytes_sent_{0};
};

// Bytes one rank sends in the bandwidth-optimal ring (pairwise) algorithm of a collective
// over `ranks` ranks: `bytes` is the buffer (AllReduce, Broadcast) or one rank's block
// (ReduceScatter's recv, AllGather's send, AllToAll's per-peer block).
enum class Collective { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kAllToAll };
inline int64_t SentByRing(Collective c, int64_t bytes, int ranks) {
  if (ranks <= 1) return 0;
  switch (c) {
    case Collective::kAllReduce: return 2 * (ranks - 1) * bytes / ranks;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
    case Collective::kAllToAll: return (ranks - 1) * bytes;
    case Collective::kBroadcast: return bytes * (ranks - 1) / ranks;  // pipelined ring, average
  }
  return 0;
}

// Exchanges small blobs among the ranks of a job before any communicator exists:
// through the coordinator's Rendezvous (workers started by colossald) or a TCP store
// (MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE, as torchrun and Slurm jobs provide).
class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank's blob, by rank. Bounded by the bootstrap's timeout.
  virtual absl::StatusOr<std::vector<std::string>> AllGather(const std::string& blob) = 0;
};

}  // namespace colossal::parallel
