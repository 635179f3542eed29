// Core (nccl_core.h): lanes, operations, failure and Split's id exchange of the NCCL
// backend.
#include "parallel/comm/nccl/nccl_core.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/logging.h"
#include "runtime/base/rng.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel::nccl {
namespace {

// Device scratch: [0, 4) the Barrier's float, [kSplitOffset, +kSplitBytes) Split's ids.
constexpr int64_t kScratchBytes = 1024;
constexpr int64_t kSplitOffset = 256;
constexpr int64_t kSplitBytes = 2 * NCCL_UNIQUE_ID_BYTES + 8;  // two ids + the rank-list hash
static_assert(kSplitOffset + kSplitBytes <= kScratchBytes);

// Yields first (an op of a few microseconds), then sleeps up to 1 ms between polls.
void Backoff(int spin) {
  if (spin < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 10 * (spin - 63))));
  }
}

void Settle(Op& op, absl::Status status) {
  if (op.settled) return;
  op.settled = true;
  op.status = std::move(status);
}

}  // namespace

absl::Status NcclWork::Wait() { return core_->Wait(*op_); }
bool NcclWork::Done() { return core_->Done(*op_); }

absl::Status Core::Init(const UniqueIds& ids, cudaStream_t compute_stream) {
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

void Core::Close() {
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

std::unique_ptr<Work> Core::Failed(std::string name, absl::Status status) {
  auto op = std::make_shared<Op>();
  op->name = std::move(name);
  Settle(*op, std::move(status));
  return std::make_unique<NcclWork>(shared_from_this(), std::move(op));
}

std::unique_ptr<Work> Core::Collective(const std::string& name, const Call* call) {
  auto op = std::make_shared<Op>();
  std::unique_lock<std::mutex> lock(mu_);
  op->name = absl::StrCat(name, " #", next_seq_++);
  IssueCollectiveLocked(lock, op, call);
  return std::make_unique<NcclWork>(shared_from_this(), std::move(op));
}

std::unique_ptr<Work> Core::Barrier() {
  const Call call = [this](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm, stream);
  };
  return Collective("Barrier", &call);
}

std::unique_ptr<Work> Core::PointToPoint(OpKind kind, std::string name, void* buf, int64_t bytes,
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

absl::Status Core::Wait(Op& op) {
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

bool Core::Done(Op& op) {
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  std::unique_lock<std::mutex> lock(mu_);
  return PollLocked(lock, op, deadline);
}

absl::Status Core::SetComputeStream(cudaStream_t stream) {
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

absl::Status Core::StreamWaitFor(cudaStream_t stream, Op& op) {
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

void Core::Abort(const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  FailLocked(status.ok() ? absl::AbortedError(absl::StrCat(Where(), ": Abort() with an OK status"))
                         : status);
}

absl::StatusOr<UniqueIds> Core::ExchangeSplitIds(const std::vector<int>& ranks) {
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

std::string Core::Where() const {
  return absl::StrCat("NCCL communicator of global ranks [", absl::StrJoin(global_ranks_, ", "),
                      "] (rank ", rank_, " of ", size_, ", device ", device_, ")");
}

absl::Status Core::Context(const absl::Status& status) const {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(Where(), ": ", status.message()));
}

absl::Status Core::PoisonLocked(const absl::Status& status) {
  if (status.ok()) return status;
  FailLocked(Context(status));
  return error_;
}

absl::Status Core::AllocScratchLocked() {
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

absl::Status Core::JoinLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                              const ncclUniqueId& id, Clock::time_point deadline) {
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

absl::Status Core::AwaitLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
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

absl::Status Core::AcquireLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
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

absl::Status Core::CallLocked(std::unique_lock<std::mutex>& lock, Lane& lane,
                              Clock::time_point deadline, const std::string& what,
                              const Call& call) {
  ncclResult_t r = call(lane.comm, lane.stream);
  if (r == ncclSuccess) return absl::OkStatus();
  if (r == ncclInProgress) return AwaitLocked(lock, lane, deadline, what);
  return PoisonLocked(NcclCheck(r, what.c_str()));
}

absl::Status Core::WaitComputeLocked(cudaStream_t stream) {
  if (compute_stream_ == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(CudaCheck(cudaEventRecord(compute_ready_, compute_stream_),
                            "cudaEventRecord(compute stream)"));
  return CudaCheck(cudaStreamWaitEvent(stream, compute_ready_, 0), "cudaStreamWaitEvent");
}

void Core::IssueCollectiveLocked(std::unique_lock<std::mutex>& lock,
                                 const std::shared_ptr<Op>& op_ptr, const Call* call,
                                 bool wait_compute) {
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

absl::Status Core::LaunchPendingLocked(std::unique_lock<std::mutex>& lock,
                                       Clock::time_point deadline) {
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

void Core::TryLaunchLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline) {
  if (op.settled || op.launched) return;
  absl::Status status = LaunchPendingLocked(lock, deadline);
  if (!status.ok()) Settle(op, status);
}

bool Core::PollLocked(std::unique_lock<std::mutex>& lock, Op& op, Clock::time_point deadline) {
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

absl::Status Core::AsyncErrorLocked() {
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

void Core::TrackLocked(const std::shared_ptr<Op>& op) {
  unsettled_.push_back(op);
  if (unsettled_.size() >= sweep_at_) {
    SweepLocked();
    sweep_at_ = std::max<size_t>(64, 2 * unsettled_.size());
  }
}

void Core::SweepLocked() {
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

void Core::FailLocked(const absl::Status& status) {
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

void Core::FinalizeLocked(std::unique_lock<std::mutex>& lock) {
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

}  // namespace colossal::parallel::nccl
