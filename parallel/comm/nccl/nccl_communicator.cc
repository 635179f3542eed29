// NcclCommunicator (nccl_communicator.h): the two non-blocking NCCL communicators of a
// rank, their streams, one CUDA event per operation, the failure state (abort + poison)
// and the unique-id exchanges of creation (Bootstrap) and Split (the parent's collective
// stream). Owns no user buffer; every NCCL call is made under Core::mu_.
#include "parallel/comm/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/comm/nccl/nccl_check.h"
#include "runtime/base/logging.h"
#include "runtime/base/rng.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

using Clock = std::chrono::steady_clock;
using Call = std::function<ncclResult_t(ncclComm_t, cudaStream_t)>;
using UniqueIds = std::array<ncclUniqueId, 2>;  // [0]: collective lane, [1]: send/recv lane

// Device scratch: [0, 4) the Barrier's float, [kSplitOffset, +kSplitBytes) Split's ids.
constexpr int64_t kScratchBytes = 1024;
constexpr int64_t kSplitOffset = 256;
constexpr int64_t kSplitBytes = 2 * NCCL_UNIQUE_ID_BYTES + 8;  // two ids + the rank-list hash
static_assert(kSplitOffset + kSplitBytes <= kScratchBytes);

// Creation blob: magic, NCCL version, id count, ids, then "host pci-bus-id".
constexpr uint32_t kHelloMagic = 0x4c43434e;  // "NCCL"

// Yields first (an op of a few microseconds), then sleeps up to 1 ms between polls.
void Backoff(int spin) {
  if (spin < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 10 * (spin - 63))));
  }
}

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

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    case DType::kI32: return ncclInt32;
  }
  return ncclUint8;
}

std::string DtypeName(DType dtype) { return std::string(kernels::DTypeName(dtype)); }

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

void Settle(Op& op, absl::Status status) {
  if (op.settled) return;
  op.settled = true;
  op.status = std::move(status);
}

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
  absl::Status Init(const UniqueIds& ids, cudaStream_t compute_stream) {
    std::unique_lock<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    RETURN_IF_ERROR(Context(guard.status()));
    compute_stream_ = compute_stream;
    RETURN_IF_ERROR(Context(CudaCheck(cudaEventCreateWithFlags(&compute_ready_,
                                                               cudaEventDisableTiming),
                                      "cudaEventCreateWithFlags")));
    for (Lane* lane : {&coll_, &p2p_}) {
      RETURN_IF_ERROR(Context(CudaCheck(
          cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking), "cudaStreamCreate")));
    }
    RETURN_IF_ERROR(AllocScratchLocked());
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    RETURN_IF_ERROR(JoinLocked(lock, coll_, ids[0], deadline));
    return JoinLocked(lock, p2p_, ids[1], deadline);
  }

  // Finalizes (idle) or aborts (work in flight) the NCCL communicators and frees the
  // streams and scratch. Idempotent; Works of this core fail with CANCELLED afterwards
  // unless they had completed.
  void Close() {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& op : pending_) {
      Settle(*op, absl::CancelledError(absl::StrCat(
                      op->name, ": the communicator was destroyed before it was launched")));
    }
    pending_.clear();
    DeviceGuard guard(device_);
    if (error_.ok() && (coll_.comm != nullptr || p2p_.comm != nullptr)) {
      bool idle = !coll_.busy && !p2p_.busy;
      for (Lane* lane : {&coll_, &p2p_}) {
        if (lane->stream != nullptr && cudaStreamQuery(lane->stream) != cudaSuccess) idle = false;
      }
      if (idle) {
        SweepLocked();
        FinalizeLocked(lock);
      } else {
        FailLocked(absl::CancelledError(
            absl::StrCat(Where(), ": destroyed with operations in flight")));
      }
    }
    if (error_.ok()) error_ = absl::CancelledError(absl::StrCat(Where(), ": destroyed"));
    if (scratch_ != nullptr) {
      if (scratch_pooled_) {
        cudaFreeAsync(scratch_, coll_.stream);  // stream-ordered: never waits for the device
      } else {
        cudaFree(scratch_);
      }
      scratch_ = nullptr;
    }
    for (Lane* lane : {&coll_, &p2p_}) {
      if (lane->stream != nullptr) cudaStreamDestroy(lane->stream);
      lane->stream = nullptr;
    }
    if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
    compute_ready_ = nullptr;
  }

  // A Work that has already failed with `status` (bad arguments, or a poisoned communicator).
  std::unique_ptr<Work> Failed(std::string name, absl::Status status) {
    auto op = std::make_shared<Op>();
    op->name = std::move(name);
    Settle(*op, std::move(status));
    return std::make_unique<NcclWork>(shared_from_this(), std::move(op));
  }

  // Enqueues `call` (nullptr: count 0, nothing to enqueue) on the collective lane.
  std::unique_ptr<Work> Collective(const std::string& name, const Call* call) {
    auto op = std::make_shared<Op>();
    std::unique_lock<std::mutex> lock(mu_);
    op->name = absl::StrCat(name, " #", next_seq_++);
    IssueCollectiveLocked(lock, op, call);
    return std::make_unique<NcclWork>(shared_from_this(), std::move(op));
  }

  // An all-reduce of one float of the scratch buffer: complete once every member joined.
  std::unique_ptr<Work> Barrier() {
    const Call call = [this](ncclComm_t comm, cudaStream_t stream) {
      return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm, stream);
    };
    return Collective("Barrier", &call);
  }

  // Queues a Send or Recv; launched with every queued one by the first Wait/Done/StreamWaitFor.
  std::unique_ptr<Work> PointToPoint(OpKind kind, std::string name, void* buf, int64_t bytes,
                                     int peer) {
    auto op = std::make_shared<Op>();
    op->kind = kind;
    op->buf = buf;
    op->bytes = bytes;
    op->peer = peer;
    op->name = std::move(name);
    std::unique_lock<std::mutex> lock(mu_);
    if (!error_.ok()) {
      Settle(*op, error_);
    } else {
      DeviceGuard guard(device_);
      absl::Status status = guard.status();
      if (status.ok()) {
        status = CudaCheck(cudaEventCreateWithFlags(&op->done, cudaEventDisableTiming),
                           "cudaEventCreateWithFlags");
      }
      if (status.ok() && compute_stream_ != nullptr) {
        status = CudaCheck(cudaEventCreateWithFlags(&op->ready, cudaEventDisableTiming),
                           "cudaEventCreateWithFlags");
        if (status.ok()) {
          status = CudaCheck(cudaEventRecord(op->ready, compute_stream_),
                             "cudaEventRecord(compute stream)");
        }
      }
      status = PoisonLocked(status);
      if (status.ok()) {
        pending_.push_back(op);
      } else {
        Settle(*op, status);
      }
    }
    return std::make_unique<NcclWork>(shared_from_this(), std::move(op));
  }

  absl::Status Wait(Op& op) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    std::unique_lock<std::mutex> lock(mu_);
    for (int spin = 0;; ++spin) {
      if (PollLocked(lock, op, deadline)) return op.status;
      if (Clock::now() >= deadline) {
        FailLocked(absl::DeadlineExceededError(absl::StrCat(
            op.name, ": not complete after ", options_.timeout.count(), " ms; ", Where(),
            " aborted (NCCL does not say which member is dead or late)")));
        Settle(op, error_);
        return op.status;
      }
      lock.unlock();
      Backoff(spin);
      lock.lock();
    }
  }

  bool Done(Op& op) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    std::unique_lock<std::mutex> lock(mu_);
    return PollLocked(lock, op, deadline);
  }

  absl::Status SetComputeStream(cudaStream_t stream) {
    std::unique_lock<std::mutex> lock(mu_);
    if (stream == nullptr) {
      compute_stream_ = nullptr;
      return absl::OkStatus();
    }
    DeviceGuard guard(device_);
    RETURN_IF_ERROR(Context(guard.status()));
    // Recording on it checks that the stream exists and belongs to this device.
    absl::Status status = CudaCheck(cudaEventRecord(compute_ready_, stream), "cudaEventRecord");
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SetComputeStream: not a stream of device ", device_, ": ", status.message()));
    }
    compute_stream_ = stream;
    return absl::OkStatus();
  }

  absl::Status StreamWaitFor(cudaStream_t stream, Op& op) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    std::unique_lock<std::mutex> lock(mu_);
    for (int spin = 0; !op.settled && !op.launched; ++spin) {
      if (!error_.ok()) return error_;
      TryLaunchLocked(lock, op, deadline);
      if (op.settled || op.launched) break;
      if (Clock::now() >= deadline) {  // another thread is launching it and stuck
        FailLocked(absl::DeadlineExceededError(absl::StrCat(
            op.name, ": not launched after ", options_.timeout.count(), " ms; ", Where(),
            " aborted")));
        return error_;
      }
      lock.unlock();
      Backoff(spin);
      lock.lock();
    }
    if (op.settled) return op.status;  // complete (nothing to wait for) or failed
    if (!error_.ok()) return error_;
    DeviceGuard guard(device_);
    RETURN_IF_ERROR(Context(guard.status()));
    return CudaCheck(cudaStreamWaitEvent(stream, op.done, 0), "cudaStreamWaitEvent");
  }

  void Abort(const absl::Status& status) {
    std::unique_lock<std::mutex> lock(mu_);
    FailLocked(status.ok() ? absl::AbortedError(absl::StrCat(Where(), ": Abort() with an OK status"))
                           : status);
  }

  // Split's id exchange among `ranks` (this communicator's numbering, ascending, this
  // rank among them): the lowest member makes two ids and sends them, with the hash of
  // the rank list, to the others over the collective lane. Bounded by options.timeout.
  absl::StatusOr<UniqueIds> ExchangeSplitIds(const std::vector<int>& ranks) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_.ok()) return error_;  // a poisoned parent splits nothing
    }
    const uint64_t hash = base::HashName(absl::StrJoin(ranks, ","));
    const bool lowest = ranks[0] == rank_;
    std::string blob(kSplitBytes, '\0');
    UniqueIds ids;
    if (lowest) {
      for (ncclUniqueId& id : ids) NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
      std::memcpy(blob.data(), ids.data(), 2 * NCCL_UNIQUE_ID_BYTES);
      std::memcpy(blob.data() + 2 * NCCL_UNIQUE_ID_BYTES, &hash, 8);
    }
    if (ranks.size() == 1) return ids;
    char* device_blob = static_cast<char*>(scratch_) + kSplitOffset;
    const std::string name = absl::StrCat("Split([", absl::StrJoin(ranks, ", "), "])");
    // Pageable host → device: staged at once, no wait for the stream.
    const Call exchange = [&](ncclComm_t comm, cudaStream_t stream) -> ncclResult_t {
      if (lowest && cudaMemcpyAsync(device_blob, blob.data(), kSplitBytes,
                                    cudaMemcpyHostToDevice, stream) != cudaSuccess) {
        return ncclUnhandledCudaError;
      }
      ncclResult_t first = ncclGroupStart();
      if (first != ncclSuccess) return first;
      for (size_t i = lowest ? 1 : 0; i < (lowest ? ranks.size() : 1); ++i) {
        ncclResult_t r = lowest ? ncclSend(device_blob, kSplitBytes, ncclUint8, ranks[i], comm,
                                           stream)
                                : ncclRecv(device_blob, kSplitBytes, ncclUint8, ranks[0], comm,
                                           stream);
        if (r != ncclSuccess && first == ncclSuccess) first = r;
      }
      ncclResult_t end = ncclGroupEnd();
      return first != ncclSuccess ? first : end;
    };
    {
      auto op = std::make_shared<Op>();
      std::unique_lock<std::mutex> lock(mu_);
      op->name = absl::StrCat(name, ": id exchange");
      IssueCollectiveLocked(lock, op, &exchange, /*wait_compute=*/false);
      lock.unlock();
      RETURN_IF_ERROR(Wait(*op));
    }
    if (lowest) return ids;
    {
      // Device → pageable host returns once copied; the exchange is complete, so at once.
      std::unique_lock<std::mutex> lock(mu_);
      if (!error_.ok()) return error_;
      DeviceGuard guard(device_);
      RETURN_IF_ERROR(Context(guard.status()));
      absl::Status status =
          CudaCheck(cudaMemcpyAsync(blob.data(), device_blob, kSplitBytes,
                                    cudaMemcpyDeviceToHost, coll_.stream),
                    "cudaMemcpyAsync(Split ids)");
      if (status.ok()) status = CudaCheck(cudaStreamSynchronize(coll_.stream), "cudaStreamSynchronize");
      RETURN_IF_ERROR(PoisonLocked(status));
    }
    uint64_t their_hash = 0;
    std::memcpy(&their_hash, blob.data() + 2 * NCCL_UNIQUE_ID_BYTES, 8);
    if (their_hash != hash) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": rank ", ranks[0], " (the lowest member) called Split with a different rank list"));
    }
    std::memcpy(ids.data(), blob.data(), 2 * NCCL_UNIQUE_ID_BYTES);
    return ids;
  }

  std::string Where() const {
    return absl::StrCat("NCCL communicator of global ranks [", absl::StrJoin(global_ranks_, ", "),
                        "] (rank ", rank_, " of ", size_, ", device ", device_, ")");
  }

 private:
  absl::Status Context(const absl::Status& status) const {
    if (status.ok()) return status;
    return absl::Status(status.code(), absl::StrCat(Where(), ": ", status.message()));
  }

  // OK for OK; else fails the communicator with `status` (in context) and returns its
  // error (the first failure, which may be an earlier one).
  absl::Status PoisonLocked(const absl::Status& status) {
    if (status.ok()) return status;
    FailLocked(Context(status));
    return error_;
  }

  absl::Status AllocScratchLocked() {
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_) == cudaSuccess &&
        pools != 0) {
      if (cudaMallocAsync(&scratch_, kScratchBytes, coll_.stream) == cudaSuccess) {
        scratch_pooled_ = true;
        return absl::OkStatus();
      }
      cudaGetLastError();  // clear the failed cudaMallocAsync; fall back to cudaMalloc
      scratch_ = nullptr;
    }
    return Context(CudaCheck(cudaMalloc(&scratch_, kScratchBytes), "cudaMalloc(scratch)"));
  }

  // ncclCommInitRankConfig on the current device (the guard's), non-blocking.
  absl::Status JoinLocked(std::unique_lock<std::mutex>& lock, Lane& lane, const ncclUniqueId& id,
                          Clock::time_point deadline) {
    lane.config.blocking = 0;
    lane.busy = true;
    ncclResult_t r = ncclCommInitRankConfig(&lane.comm, size_, id, rank_, &lane.config);
    absl::Status status;
    if (r == ncclSuccess || r == ncclInProgress) {
      status = AwaitLocked(lock, lane, deadline, "ncclCommInitRankConfig");
    } else {
      status = PoisonLocked(NcclCheck(r, "ncclCommInitRankConfig"));
    }
    lane.busy = false;
    return status;
  }

  // Waits for the lane's communicator to leave ncclInProgress (releasing mu_ between
  // polls). An error state or the deadline aborts the communicator.
  absl::Status AwaitLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                           Clock::time_point deadline, const std::string& what) {
    for (int spin = 0;; ++spin) {
      if (!error_.ok()) return error_;
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(lane.comm, &state);
      if (r != ncclSuccess) return PoisonLocked(NcclCheck(r, "ncclCommGetAsyncError"));
      if (state == ncclSuccess) return absl::OkStatus();
      if (state != ncclInProgress) return PoisonLocked(NcclCheck(state, what.c_str()));
      if (Clock::now() >= deadline) {
        FailLocked(absl::DeadlineExceededError(
            absl::StrCat(what, ": still in progress after ", options_.timeout.count(), " ms; ",
                         Where(), " aborted (NCCL does not say which member is dead or late)")));
        return error_;
      }
      lock.unlock();
      Backoff(spin);
      lock.lock();
    }
  }

  // Takes the lane (waits while another thread holds it).
  absl::Status AcquireLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                             Clock::time_point deadline, const std::string& what) {
    for (int spin = 0; lane.busy; ++spin) {
      if (!error_.ok()) return error_;
      if (Clock::now() >= deadline) {
        FailLocked(absl::DeadlineExceededError(absl::StrCat(
            what, ": the NCCL communicator stayed busy for ", options_.timeout.count(), " ms; ",
            Where(), " aborted")));
        return error_;
      }
      lock.unlock();
      Backoff(spin);
      lock.lock();
    }
    if (!error_.ok()) return error_;
    lane.busy = true;
    return absl::OkStatus();
  }

  // Makes the NCCL call(s) on an acquired lane and waits out ncclInProgress. Any failure
  // poisons the communicator: a non-blocking NCCL communicator keeps even an argument
  // error as its asynchronous error (the common bad arguments are caught before NCCL).
  absl::Status CallLocked(std::unique_lock<std::mutex>& lock, Lane& lane, Clock::time_point deadline,
                          const std::string& what, const Call& call) {
    ncclResult_t r = call(lane.comm, lane.stream);
    if (r == ncclSuccess) return absl::OkStatus();
    if (r == ncclInProgress) return AwaitLocked(lock, lane, deadline, what);
    return PoisonLocked(NcclCheck(r, what.c_str()));
  }

  absl::Status WaitComputeLocked(cudaStream_t stream) {
    if (compute_stream_ == nullptr) return absl::OkStatus();
    RETURN_IF_ERROR(CudaCheck(cudaEventRecord(compute_ready_, compute_stream_),
                              "cudaEventRecord(compute stream)"));
    return CudaCheck(cudaStreamWaitEvent(stream, compute_ready_, 0), "cudaStreamWaitEvent");
  }

  void IssueCollectiveLocked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Op>& op_ptr,
                             const Call* call, bool wait_compute = true) {
    Op& op = *op_ptr;
    if (!error_.ok()) return Settle(op, error_);
    DeviceGuard guard(device_);
    if (!guard.status().ok()) return Settle(op, Context(guard.status()));
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    absl::Status status = AcquireLocked(lock, coll_, deadline, op.name);
    if (!status.ok()) return Settle(op, status);
    status = CudaCheck(cudaEventCreateWithFlags(&op.done, cudaEventDisableTiming),
                       "cudaEventCreateWithFlags");
    if (status.ok() && wait_compute) status = WaitComputeLocked(coll_.stream);
    status = PoisonLocked(status);
    if (status.ok() && call != nullptr) status = CallLocked(lock, coll_, deadline, op.name, *call);
    if (status.ok() && error_.ok()) {
      status = PoisonLocked(CudaCheck(cudaEventRecord(op.done, coll_.stream), "cudaEventRecord"));
    }
    coll_.busy = false;
    if (!status.ok()) return Settle(op, status);
    if (!error_.ok()) return Settle(op, error_);  // aborted by another thread meanwhile
    op.launched = true;
    TrackLocked(op_ptr);
  }

  // Launches every queued Send/Recv as one NCCL group on the send/recv lane.
  absl::Status LaunchPendingLocked(std::unique_lock<std::mutex>& lock, Clock::time_point deadline) {
    if (pending_.empty()) return absl::OkStatus();
    std::vector<std::shared_ptr<Op>> batch;
    batch.swap(pending_);
    const std::string what = absl::StrCat(batch.front()->name, batch.size() > 1 ? " and " : "",
                                          batch.size() > 1 ? absl::StrCat(batch.size() - 1) : "",
                                          batch.size() > 1 ? " more Send/Recv" : "");
    DeviceGuard guard(device_);
    absl::Status status = Context(guard.status());
    bool acquired = false;
    if (status.ok()) {
      status = AcquireLocked(lock, p2p_, deadline, what);
      acquired = status.ok();
    }
    for (size_t i = 0; status.ok() && i < batch.size(); ++i) {
      if (batch[i]->ready == nullptr) continue;
      status = PoisonLocked(
          CudaCheck(cudaStreamWaitEvent(p2p_.stream, batch[i]->ready, 0), "cudaStreamWaitEvent"));
    }
    if (status.ok()) {
      const Call group = [&batch](ncclComm_t comm, cudaStream_t stream) -> ncclResult_t {
        ncclResult_t first = ncclGroupStart();
        if (first != ncclSuccess) return first;
        for (const auto& op : batch) {
          if (op->bytes == 0) continue;
          ncclResult_t r =
              op->kind == OpKind::kSend
                  ? ncclSend(op->buf, static_cast<size_t>(op->bytes), ncclUint8, op->peer, comm, stream)
                  : ncclRecv(op->buf, static_cast<size_t>(op->bytes), ncclUint8, op->peer, comm, stream);
          if (r != ncclSuccess && first == ncclSuccess) first = r;
        }
        ncclResult_t end = ncclGroupEnd();
        return first != ncclSuccess ? first : end;
      };
      status = CallLocked(lock, p2p_, deadline, what, group);
    }
    for (size_t i = 0; status.ok() && error_.ok() && i < batch.size(); ++i) {
      status = PoisonLocked(CudaCheck(cudaEventRecord(batch[i]->done, p2p_.stream), "cudaEventRecord"));
    }
    if (acquired) p2p_.busy = false;
    if (status.ok() && !error_.ok()) status = error_;
    for (const auto& op : batch) {
      if (!status.ok()) {
        Settle(*op, status);
      } else {
        op->launched = true;
        TrackLocked(op);
      }
    }
    return status;
  }

  // One attempt to launch `op` if it is a queued Send/Recv; settles it on failure.
  void TryLaunchLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline) {
    if (op.settled || op.launched) return;
    absl::Status status = LaunchPendingLocked(lock, deadline);
    if (!status.ok()) Settle(op, status);
  }

  // True once `op` is settled: complete, failed, or failed by the communicator's error.
  bool PollLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline) {
    if (op.settled) return true;
    if (!error_.ok()) {
      Settle(op, error_);
      return true;
    }
    TryLaunchLocked(lock, op, deadline);
    if (op.settled) return true;
    if (!op.launched) return false;  // another thread is launching its group
    cudaError_t query = cudaEventQuery(op.done);
    if (query == cudaSuccess) {
      Settle(op, absl::OkStatus());
      return true;
    }
    absl::Status status = query == cudaErrorNotReady
                              ? AsyncErrorLocked()
                              : Context(CudaCheck(query, "cudaEventQuery"));
    if (status.ok()) return false;
    FailLocked(status);
    Settle(op, error_);
    return true;
  }

  // An asynchronous error of either NCCL communicator (a peer's connection closed, ...).
  absl::Status AsyncErrorLocked() {
    for (Lane* lane : {&coll_, &p2p_}) {
      if (lane->comm == nullptr) continue;
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(lane->comm, &state);
      if (r != ncclSuccess) return Context(NcclCheck(r, "ncclCommGetAsyncError"));
      if (state != ncclSuccess && state != ncclInProgress) {
        return Context(NcclCheck(state, "asynchronous NCCL error"));
      }
    }
    return absl::OkStatus();
  }

  // Remembers a launched op for SweepLocked; sweeps when the list has doubled.
  void TrackLocked(const std::shared_ptr<Op>& op) {
    unsettled_.push_back(op);
    if (unsettled_.size() >= sweep_at_) {
      SweepLocked();
      sweep_at_ = std::max<size_t>(64, 2 * unsettled_.size());
    }
  }

  // Settles, as successful, every launched op whose event has completed.
  void SweepLocked() {
    size_t kept = 0;
    for (size_t i = 0; i < unsettled_.size(); ++i) {
      std::shared_ptr<Op> op = unsettled_[i].lock();
      if (op == nullptr || op->settled) continue;
      if (op->launched && cudaEventQuery(op->done) == cudaSuccess) {
        Settle(*op, absl::OkStatus());
        continue;
      }
      unsettled_[kept++] = unsettled_[i];
    }
    unsettled_.resize(kept);
  }

  // The first failure: keeps the ops already complete, fails the rest, aborts NCCL.
  void FailLocked(const absl::Status& status) {
    if (!error_.ok()) return;
    SweepLocked();
    error_ = status;
    if (status.code() != absl::StatusCode::kCancelled) {
      LOG_WARN("{}: {}; communicator aborted", Where(), status.ToString());
    }
    for (auto& op : pending_) Settle(*op, status);
    pending_.clear();
    DeviceGuard guard(device_);
    for (Lane* lane : {&coll_, &p2p_}) {
      if (lane->comm == nullptr) continue;
      ncclResult_t r = ncclCommAbort(lane->comm);
      if (r != ncclSuccess) LOG_WARN("{}: ncclCommAbort: {}", Where(), ncclGetErrorString(r));
      lane->comm = nullptr;
    }
  }

  // ncclCommFinalize (bounded) then ncclCommDestroy on both lanes; aborts on failure.
  void FinalizeLocked(std::unique_lock<std::mutex>& lock) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    for (Lane* lane : {&coll_, &p2p_}) {
      if (lane->comm == nullptr || !error_.ok()) continue;
      lane->busy = true;
      ncclResult_t r = ncclCommFinalize(lane->comm);
      if (r == ncclSuccess || r == ncclInProgress) {
        // A failure or the deadline aborts both lanes (error_ is set): checked below.
        (void)AwaitLocked(lock, *lane, deadline, "ncclCommFinalize");
      } else {
        FailLocked(Context(NcclCheck(r, "ncclCommFinalize")));
      }
      lane->busy = false;
    }
    if (!error_.ok()) return;  // aborted instead
    for (Lane* lane : {&coll_, &p2p_}) {
      if (lane->comm == nullptr) continue;
      ncclResult_t r = ncclCommDestroy(lane->comm);
      if (r != ncclSuccess) LOG_WARN("{}: ncclCommDestroy: {}", Where(), ncclGetErrorString(r));
      lane->comm = nullptr;
    }
  }

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

absl::Status NcclWork::Wait() { return core_->Wait(*op_); }
bool NcclWork::Done() { return core_->Done(*op_); }

class NcclCommunicatorImpl final : public NcclCommunicator {
 public:
  explicit NcclCommunicatorImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~NcclCommunicatorImpl() override { core_->Close(); }

  int rank() const override { return core_->rank(); }
  int size() const override { return core_->size(); }
  const std::vector<int>& global_ranks() const override { return core_->global_ranks(); }
  int device() const override { return core_->device(); }

  std::unique_ptr<Work> AllReduce(void* buf, int64_t count, DType dtype) override {
    const std::string name = absl::StrCat("AllReduce(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckSum(name, buf, buf, count, dtype)) return bad;
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclAllReduce(buf, buf, static_cast<size_t>(count), NcclType(dtype), ncclSum, comm,
                           stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> ReduceScatter(const void* send, void* recv, int64_t count,
                                      DType dtype) override {
    const std::string name =
        absl::StrCat("ReduceScatter(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckSum(name, send, recv, count, dtype)) return bad;
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclReduceScatter(send, recv, static_cast<size_t>(count), NcclType(dtype), ncclSum,
                               comm, stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> AllGather(const void* send, void* recv, int64_t count,
                                  DType dtype) override {
    const std::string name = absl::StrCat("AllGather(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclAllGather(send, recv, static_cast<size_t>(count), NcclType(dtype), comm, stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> Broadcast(void* buf, int64_t count, DType dtype, int root) override {
    const std::string name = absl::StrCat("Broadcast(count=", count, ", ", DtypeName(dtype),
                                          ", root=", root, ")");
    if (auto bad = CheckBuffers(name, buf, buf, count)) return bad;
    if (root < 0 || root >= size()) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": root ", root, " is not a rank of a communicator of ",
                                     size())));
    }
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclBroadcast(buf, buf, static_cast<size_t>(count), NcclType(dtype), root, comm,
                           stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  // One NCCL group of a Send and a Recv per member (self included), on the collective lane.
  std::unique_ptr<Work> AllToAll(const void* send, void* recv, int64_t count,
                                 DType dtype) override {
    const std::string name = absl::StrCat("AllToAll(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    const int n = size();
    const int64_t block = count * kernels::DTypeSize(dtype);
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) -> ncclResult_t {
      ncclResult_t first = ncclGroupStart();
      if (first != ncclSuccess) return first;
      for (int q = 0; q < n; ++q) {
        ncclResult_t r = ncclSend(static_cast<const char*>(send) + q * block,
                                  static_cast<size_t>(count), NcclType(dtype), q, comm, stream);
        if (r == ncclSuccess) {
          r = ncclRecv(static_cast<char*>(recv) + q * block, static_cast<size_t>(count),
                       NcclType(dtype), q, comm, stream);
        }
        if (r != ncclSuccess && first == ncclSuccess) first = r;
      }
      ncclResult_t end = ncclGroupEnd();
      return first != ncclSuccess ? first : end;
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> Send(const void* buf, int64_t bytes, int peer, int tag) override {
    std::string name = absl::StrCat("Send(", bytes, " bytes to rank ", peer, ", tag ", tag, ")");
    if (auto bad = CheckPointToPoint(name, buf, bytes, peer, tag)) return bad;
    return core_->PointToPoint(OpKind::kSend, std::move(name), const_cast<void*>(buf), bytes,
                               peer);
  }

  std::unique_ptr<Work> Recv(void* buf, int64_t bytes, int peer, int tag) override {
    std::string name = absl::StrCat("Recv(", bytes, " bytes from rank ", peer, ", tag ", tag, ")");
    if (auto bad = CheckPointToPoint(name, buf, bytes, peer, tag)) return bad;
    return core_->PointToPoint(OpKind::kRecv, std::move(name), buf, bytes, peer);
  }

  std::unique_ptr<Work> Barrier() override { return core_->Barrier(); }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::vector<int>& ranks) override {
    const std::string name = absl::StrCat("Split([", absl::StrJoin(ranks, ", "), "])");
    int new_rank = -1;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] < 0 || ranks[i] >= size() || (i > 0 && ranks[i] <= ranks[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": ranks must be ascending, distinct and in [0, ", size(), ")"));
      }
      if (ranks[i] == rank()) new_rank = static_cast<int>(i);
    }
    if (new_rank < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": rank ", rank(), " called Split but is not a member"));
    }
    ASSIGN_OR_RETURN(UniqueIds ids, core_->ExchangeSplitIds(ranks));
    std::vector<int> globals;
    for (int r : ranks) globals.push_back(global_ranks()[r]);
    auto child = std::make_shared<Core>(device(), new_rank, std::move(globals), core_->options());
    RETURN_IF_ERROR(child->Init(ids, core_->compute_stream()));
    LOG_INFO("{}: split from {}", child->Where(), core_->Where());
    return std::unique_ptr<Communicator>(new NcclCommunicatorImpl(std::move(child)));
  }

  void Abort(const absl::Status& status) override { core_->Abort(status); }

  absl::Status SetComputeStream(CudaStream stream) override {
    return core_->SetComputeStream(stream);
  }

  absl::Status StreamWaitFor(CudaStream stream, Work& work) override {
    auto* nccl_work = dynamic_cast<NcclWork*>(&work);
    if (nccl_work == nullptr || nccl_work->core() != core_.get()) {
      return absl::InvalidArgumentError(
          "StreamWaitFor: the Work is not an operation of this NCCL communicator");
    }
    return core_->StreamWaitFor(stream, nccl_work->op());
  }

 private:
  std::unique_ptr<Work> CheckBuffers(const std::string& name, const void* send, const void* recv,
                                     int64_t count) {
    if (count < 0) {
      return core_->Failed(name, absl::InvalidArgumentError(
                                     absl::StrCat(name, ": negative count ", count)));
    }
    if (count > 0 && (send == nullptr || recv == nullptr)) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": null buffer for ", count, " elements")));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckSum(const std::string& name, const void* send, const void* recv,
                                 int64_t count, DType dtype) {
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    if (dtype != DType::kF32 && dtype != DType::kBF16) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": sums f32 or bf16 elements, not ", DtypeName(dtype))));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckPointToPoint(const std::string& name, const void* buf, int64_t bytes,
                                          int peer, int tag) {
    if (auto bad = CheckBuffers(name, buf, buf, bytes)) return bad;
    if (peer < 0 || peer >= size()) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": peer ", peer, " is not a rank of a communicator of ",
                                     size())));
    }
    if (tag < 0) {
      return core_->Failed(name, absl::InvalidArgumentError(
                                     absl::StrCat(name, ": tag ", tag, " is negative")));
    }
    return nullptr;
  }

  std::shared_ptr<Core> core_;
};

// The creation blob each rank sends through the Bootstrap.
struct Hello {
  int version = 0;              // ncclGetVersion
  std::vector<ncclUniqueId> ids;  // rank 0 only: the two lanes' ids
  std::string location;         // "host pci-bus-id" of the rank's device
};

std::string EncodeHello(const Hello& hello) {
  std::string blob(12 + hello.ids.size() * NCCL_UNIQUE_ID_BYTES, '\0');
  const uint32_t magic = kHelloMagic;
  const int32_t version = hello.version;
  const int32_t n_ids = static_cast<int32_t>(hello.ids.size());
  std::memcpy(blob.data(), &magic, 4);
  std::memcpy(blob.data() + 4, &version, 4);
  std::memcpy(blob.data() + 8, &n_ids, 4);
  if (!hello.ids.empty()) std::memcpy(blob.data() + 12, hello.ids.data(), hello.ids.size() * NCCL_UNIQUE_ID_BYTES);
  return blob + hello.location;
}

absl::StatusOr<Hello> DecodeHello(const std::string& blob, int from) {
  uint32_t magic = 0;
  int32_t version = 0, n_ids = -1;
  if (blob.size() >= 12) {
    std::memcpy(&magic, blob.data(), 4);
    std::memcpy(&version, blob.data() + 4, 4);
    std::memcpy(&n_ids, blob.data() + 8, 4);
  }
  if (magic != kHelloMagic || n_ids < 0 || n_ids > 2 ||
      blob.size() < 12 + static_cast<size_t>(n_ids) * NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CreateNcclCommunicator: rank ", from, " sent ", blob.size(),
        " bytes that are not an NCCL hello (is every rank creating an NCCL communicator?)"));
  }
  Hello hello;
  hello.version = version;
  hello.ids.resize(n_ids);
  if (n_ids > 0) std::memcpy(hello.ids.data(), blob.data() + 12, n_ids * NCCL_UNIQUE_ID_BYTES);
  hello.location = blob.substr(12 + n_ids * NCCL_UNIQUE_ID_BYTES);
  return hello;
}

// "host pci-bus-id boot-id": equal for two ranks only on the same GPU of one machine (the
// kernel's boot id tells apart machines that share a host name; containers share it).
absl::StatusOr<std::string> Location(int device) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  char bus[64] = {};
  RETURN_IF_ERROR(CudaCheck(cudaDeviceGetPCIBusId(bus, sizeof(bus), device),
                            "cudaDeviceGetPCIBusId"));
  std::string boot_id = "?";
  if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char line[64] = {};
    if (std::fgets(line, sizeof(line), f) != nullptr) boot_id = std::string(line, std::strcspn(line, "\n"));
    std::fclose(f);
  }
  return absl::StrCat(host, " ", bus, " ", boot_id);
}

}  // namespace

bool NcclBackendBuilt() { return true; }

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Bootstrap& bootstrap,
                                                                     const CommOptions& options,
                                                                     int device) {
  const std::string what = absl::StrCat("CreateNcclCommunicator(rank ", bootstrap.rank(), " of ",
                                        bootstrap.size(), ", device ", device, ")");
  if (options.timeout.count() <= 0 || device < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": needs timeout > 0 (got ",
                                                   options.timeout.count(),
                                                   " ms) and a device >= 0"));
  }
  auto in_context = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
  };
  Hello mine;
  {
    DeviceGuard guard(device);  // fails for a device that does not exist
    if (!guard.status().ok()) return in_context(guard.status());
    absl::StatusOr<std::string> location = Location(device);
    if (!location.ok()) return in_context(location.status());
    mine.location = *location;
  }
  absl::Status status = NcclCheck(ncclGetVersion(&mine.version), "ncclGetVersion");
  if (status.ok() && bootstrap.rank() == 0) {
    mine.ids.resize(2);
    for (ncclUniqueId& id : mine.ids) {
      if (status.ok()) status = NcclCheck(ncclGetUniqueId(&id), "ncclGetUniqueId");
    }
  }
  if (!status.ok()) return in_context(status);
  absl::StatusOr<std::vector<std::string>> blobs = bootstrap.AllGather(EncodeHello(mine));
  if (!blobs.ok()) return in_context(blobs.status());
  if (static_cast<int>(blobs->size()) != bootstrap.size()) {
    return absl::InternalError(absl::StrCat(what, ": the bootstrap returned ", blobs->size(),
                                            " blobs"));
  }
  UniqueIds ids;
  for (int r = 0; r < bootstrap.size(); ++r) {
    ASSIGN_OR_RETURN(Hello theirs, DecodeHello((*blobs)[r], r));
    if (theirs.version != mine.version) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": rank ", r, " runs NCCL version code ", theirs.version, ", this rank ",
          mine.version, " (every rank needs the same NCCL)"));
    }
    if (r == 0) {
      if (theirs.ids.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": rank 0 sent no NCCL unique ids"));
      }
      std::memcpy(ids.data(), theirs.ids.data(), 2 * NCCL_UNIQUE_ID_BYTES);
    }
    if (r != bootstrap.rank() && theirs.location == mine.location) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": rank ", r, " uses the same GPU (", mine.location,
          "); NCCL needs one device per rank (pick the device by local rank)"));
    }
  }
  std::vector<int> world(bootstrap.size());
  for (int r = 0; r < bootstrap.size(); ++r) world[r] = r;
  auto core = std::make_shared<Core>(device, bootstrap.rank(), std::move(world), options);
  RETURN_IF_ERROR(core->Init(ids, nullptr));
  LOG_INFO("{}: created ({}), NCCL version code {}", core->Where(), mine.location, mine.version);
  return std::unique_ptr<Communicator>(new NcclCommunicatorImpl(std::move(core)));
}

}  // namespace colossal::parallel
