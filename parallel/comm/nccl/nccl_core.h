// The shared core of the NCCL backend (nccl_communicator.h): a rank's two non-blocking
// NCCL communicators (lanes) and their streams, one CUDA event per operation, the failure
// state (abort + poison), Send/Recv batching and Split's unique-id exchange. Owns no user
// buffer; every NCCL call is made under Core::mu_. Does not own the Communicator
// interface or the creation handshake (nccl_communicator.cc). Internal to this folder.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/nccl/nccl_check.h"

namespace colossal::parallel::nccl {

using Clock = std::chrono::steady_clock;
using Call = std::function<ncclResult_t(ncclComm_t, cudaStream_t)>;
using UniqueIds = std::array<ncclUniqueId, 2>;  // [0]: collective lane, [1]: send/recv lane

// Makes `device` current for the scope; restores the caller's device at its end.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    status_ = CudaCheck(cudaGetDevice(&previous_), "cudaGetDevice");
    if (status_.ok() && previous_ != device) {
      status_ = CudaCheck(cudaSetDevice(device), "cudaSetDevice");
      switched_ = status_.ok();
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
  int previous_ = 0;
  bool switched_ = false;
};

enum class OpKind { kCollective, kSend, kRecv };

// One operation. Fields are guarded by Core::mu_; the events are owned.
struct Op {
  OpKind kind = OpKind::kCollective;
  std::string name;
  cudaEvent_t done = nullptr;   // recorded on the lane's stream after the NCCL call(s)
  cudaEvent_t ready = nullptr;  // Send/Recv: the compute stream at issue time
  void* buf = nullptr;          // Send/Recv
  int64_t bytes = 0;
  int peer = 0;
  bool launched = false;        // `done` is recorded
  bool settled = false;         // `status` is final
  absl::Status status;

  Op() = default;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
  ~Op() {
    if (done != nullptr) cudaEventDestroy(done);
    if (ready != nullptr) cudaEventDestroy(ready);
  }
};

// One NCCL communicator and the stream its operations run on.
struct Lane {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;  // kept alive for NCCL's background init
  bool busy = false;  // a thread owns the lane: enqueueing, or waiting out ncclInProgress
};

class Core;

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<Core> core, std::shared_ptr<Op> op)
      : core_(std::move(core)), op_(std::move(op)) {}
  absl::Status Wait() override;
  bool Done() override;
  const Core* core() const { return core_.get(); }
  Op& op() { return *op_; }

 private:
  std::shared_ptr<Core> core_;
  std::shared_ptr<Op> op_;
};

// Everything a communicator and its Works share; Works keep it alive after the
// communicator is gone (Close() releases the NCCL and CUDA resources).
class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(int device, int rank, std::vector<int> global_ranks, const CommOptions& options)
      : device_(device),
        rank_(rank),
        size_(static_cast<int>(global_ranks.size())),
        global_ranks_(std::move(global_ranks)),
        options_(options) {}
  ~Core() { Close(); }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  int device() const { return device_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::vector<int>& global_ranks() const { return global_ranks_; }
  const CommOptions& options() const { return options_; }

  cudaStream_t compute_stream() {
    std::lock_guard<std::mutex> lock(mu_);
    return compute_stream_;
  }

  // Creates the streams, events and scratch, then joins both NCCL communicators (every
  // member calls it with the same ids). Bounded by options.timeout.
  absl::Status Init(const UniqueIds& ids, cudaStream_t compute_stream);

  // Finalizes (idle) or aborts (work in flight) the NCCL communicators and frees the
  // streams and scratch. Idempotent; Works of this core fail with CANCELLED afterwards
  // unless they had completed.
  void Close();

  // A Work that has already failed with `status` (bad arguments, or a poisoned communicator).
  std::unique_ptr<Work> Failed(std::string name, absl::Status status);

  // Enqueues `call` (nullptr: count 0, nothing to enqueue) on the collective lane.
  std::unique_ptr<Work> Collective(const std::string& name, const Call* call);

  // An all-reduce of one float of the scratch buffer: complete once every member joined.
  std::unique_ptr<Work> Barrier();

  // Queues a Send or Recv; launched with every queued one by the first Wait/Done/StreamWaitFor.
  std::unique_ptr<Work> PointToPoint(OpKind kind, std::string name, void* buf, int64_t bytes,
                                     int peer);

  // NcclWork's Wait() and Done(), and NcclCommunicator's methods of the same names
  // (nccl_communicator.h).
  absl::Status Wait(Op& op);
  bool Done(Op& op);
  absl::Status SetComputeStream(cudaStream_t stream);
  absl::Status StreamWaitFor(cudaStream_t stream, Op& op);
  void Abort(const absl::Status& status);

  // Split's id exchange among `ranks` (this communicator's numbering, ascending, this
  // rank among them): the lowest member makes two ids and sends them, with the hash of
  // the rank list, to the others over the collective lane. Bounded by options.timeout.
  absl::StatusOr<UniqueIds> ExchangeSplitIds(const std::vector<int>& ranks);

  // "NCCL communicator of global ranks [...] (rank r of n, device d)": the context of
  // every error and log line.
  std::string Where() const;

 private:
  // `status` prefixed with Where().
  absl::Status Context(const absl::Status& status) const;

  // OK for OK; else fails the communicator with `status` (in context) and returns its
  // error (the first failure, which may be an earlier one).
  absl::Status PoisonLocked(const absl::Status& status);

  // kScratchBytes of device memory: stream-ordered where the device has memory pools.
  absl::Status AllocScratchLocked();

  // ncclCommInitRankConfig on the current device (the guard's), non-blocking.
  absl::Status JoinLocked(std::unique_lock<std::mutex>& lock, Lane& lane, const ncclUniqueId& id,
                          Clock::time_point deadline);

  // Waits for the lane's communicator to leave ncclInProgress (releasing mu_ between
  // polls). An error state or the deadline aborts the communicator.
  absl::Status AwaitLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                           Clock::time_point deadline, const std::string& what);

  // Takes the lane (waits while another thread holds it).
  absl::Status AcquireLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                             Clock::time_point deadline, const std::string& what);

  // Makes the NCCL call(s) on an acquired lane and waits out ncclInProgress. Any failure
  // poisons the communicator: a non-blocking NCCL communicator keeps even an argument
  // error as its asynchronous error (the common bad arguments are caught before NCCL).
  absl::Status CallLocked(std::unique_lock<std::mutex>& lock, Lane& lane, Clock::time_point deadline,
                          const std::string& what, const Call& call);

  // Makes `stream` wait for the work enqueued on the compute stream so far (if one is set).
  absl::Status WaitComputeLocked(cudaStream_t stream);

  // Enqueues `call` (nullptr: nothing) for `op` on the collective lane, after the compute
  // stream unless !wait_compute, and records `op`'s event; settles `op` on failure.
  void IssueCollectiveLocked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Op>& op_ptr,
                             const Call* call, bool wait_compute = true);

  // Launches every queued Send/Recv as one NCCL group on the send/recv lane.
  absl::Status LaunchPendingLocked(std::unique_lock<std::mutex>& lock, Clock::time_point deadline);

  // One attempt to launch `op` if it is a queued Send/Recv; settles it on failure.
  void TryLaunchLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline);

  // True once `op` is settled: complete, failed, or failed by the communicator's error.
  bool PollLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline);

  // An asynchronous error of either NCCL communicator (a peer's connection closed, ...).
  absl::Status AsyncErrorLocked();

  // Remembers a launched op for SweepLocked; sweeps when the list has doubled.
  void TrackLocked(const std::shared_ptr<Op>& op);

  // Settles, as successful, every launched op whose event has completed.
  void SweepLocked();

  // The first failure: keeps the ops already complete, fails the rest, aborts NCCL.
  void FailLocked(const absl::Status& status);

  // ncclCommFinalize (bounded) then ncclCommDestroy on both lanes; aborts on failure.
  void FinalizeLocked(std::unique_lock<std::mutex>& lock);

  const int device_;
  const int rank_;
  const int size_;
  const std::vector<int> global_ranks_;
  const CommOptions options_;

  std::mutex mu_;  // guards everything below and every NCCL call
  Lane coll_;      // collectives (and Split's id exchange), in issue order
  Lane p2p_;       // Send/Recv groups
  cudaStream_t compute_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;  // recorded on compute_stream_ at each issue
  void* scratch_ = nullptr;              // kScratchBytes of device memory
  bool scratch_pooled_ = false;          // from cudaMallocAsync (freed stream-ordered)
  absl::Status error_;                   // the first failure; every later op fails with it
  bool closed_ = false;
  int64_t next_seq_ = 0;
  std::vector<std::shared_ptr<Op>> pending_;  // Send/Recv not launched yet, in issue order
  std::vector<std::weak_ptr<Op>> unsettled_;  // launched ops, for SweepLocked
  size_t sweep_at_ = 64;
};

}  // namespace colossal::parallel::nccl
