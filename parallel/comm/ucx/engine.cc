// Engine (engine.h): request posting and completion, the progress rounds run by the
// progress thread or by waiters, deadlines and peer failure. (Set-up and teardown:
// engine_setup.cc; tagged transfers: transfer.cc.)
#include "parallel/comm/ucx/engine.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "parallel/comm/ucx/reduce.h"
#include "runtime/base/check.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel::ucx {
namespace {

// How long a peer reported failed by UCX is given before ops that need it fail: a peer
// that finished its part and exited may still have messages in our queues.
constexpr auto kPeerFailureGrace = std::chrono::milliseconds(100);
// How long a failed op waits for its cancelled / in-flight requests before it
// force-closes their endpoints, and again before it gives up on them.
constexpr auto kDrainGrace = std::chrono::milliseconds(200);
// The progress thread naps kNap at a time while ops came in the last kDeepSleepAfter, then
// sleeps until Submit wakes it, running one idle round every kIdleRound.
constexpr auto kNap = std::chrono::milliseconds(1);
// Progress of the control worker when it carries neither data nor control ops.
constexpr auto kControlRound = std::chrono::milliseconds(1);
constexpr auto kDeepSleepAfter = std::chrono::milliseconds(10);
constexpr auto kIdleRound = std::chrono::milliseconds(50);

// Spin, then yield, then nap: drivers call Pause() after every round of progress. With a
// core to itself a waiting rank spins (like MPI) for up to `spin_rounds` idle rounds
// (≈ 1 ms); with more ranks than cores on the machine it yields from the start, so the
// rank that has work gets the core. After 2 ms without progress it naps 50 µs a round.
class Backoff {
 public:
  explicit Backoff(int spin_rounds) : spin_rounds_(spin_rounds) {}
  void Pause(bool progressed) {
    if (progressed) {
      idle_ = 0;
      napping_ = false;
      return;
    }
    ++idle_;
    if (idle_ < spin_rounds_) {
      __builtin_ia32_pause();
      return;
    }
    if (idle_ == spin_rounds_) idle_start_ = Clock::now();
    if ((idle_ & 63) == 0 && Clock::now() - idle_start_ > std::chrono::milliseconds(2)) {
      napping_ = true;
    }
    if (napping_) {
      timespec ts{0, 50 * 1000};
      nanosleep(&ts, nullptr);
    } else {
      sched_yield();
    }
  }

 private:
  const int spin_rounds_;
  int64_t idle_ = 0;
  bool napping_ = false;
  Clock::time_point idle_start_;
};

}  // namespace

// ---------------------------------------------------------------------------- Op

Op::Op(std::shared_ptr<CommState> comm_state, OpKind op_kind, std::string op_label)
    : comm(std::move(comm_state)), kind(op_kind), label(std::move(op_label)) {}

Op::~Op() = default;

int Op::rank() const { return comm->rank; }
int Op::size() const { return comm->size; }
const CommOptions& Op::options() const { return comm->options; }

static uint32_t Payload(const Op& op, uint32_t slot) {
  if (op.kind == OpKind::kCollective) return ((op.seq & 0x3ffu) << 16) | (slot & 0xffffu);
  return slot;
}

static TagKind KindOf(OpKind kind) {
  switch (kind) {
    case OpKind::kCollective: return TagKind::kCollective;
    case OpKind::kPointToPoint: return TagKind::kPointToPoint;
    case OpKind::kControl: return TagKind::kControl;
  }
  return TagKind::kControl;
}

Req* Op::Send(const void* buf, size_t bytes, int peer, uint32_t slot) {
  if (kind != OpKind::kControl) {  // payload bytes for Communicator::bytes_sent
    comm->bytes_sent.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }
  return comm->engine->PostSend(*this, buf, bytes, peer,
                                MakeTag(comm->id, comm->rank, KindOf(kind), Payload(*this, slot)),
                                control_lane);
}

Req* Op::Recv(void* buf, size_t bytes, int peer, uint32_t slot) {
  return comm->engine->PostRecv(*this, buf, bytes, peer,
                                MakeTag(comm->id, peer, KindOf(kind), Payload(*this, slot)));
}

Req* Op::RecvReduce(void* dst, const void* a, void* staging, size_t bytes, int peer,
                    uint32_t slot, kernels::DType dtype) {
  Req* req = Recv(staging, bytes, peer, slot);
  req->reduce = true;
  req->reduce_dtype = dtype;
  req->sum_dst = dst;
  req->sum_a = a;
  return req;
}

void Op::FinishReduce(Req* req) {
  if (req->reduced) return;
  SumInto(req->sum_dst, req->sum_a, req->dst,
          static_cast<int64_t>(req->bytes) / kernels::DTypeSize(req->reduce_dtype),
          req->reduce_dtype);
  req->reduced = true;
}

char* Op::Scratch(size_t bytes) {
  if (comm->scratch_bytes < bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    comm->scratch = {static_cast<char*>(std::aligned_alloc(64, rounded)), &std::free};
    COL_CHECK(comm->scratch != nullptr);
    comm->scratch_bytes = rounded;
  }
  return comm->scratch.get();
}

bool ReqAwaiter::await_ready() const {
  if (a_ == nullptr) {
    for (const Req& r : op_->reqs) {
      if (!r.done || r.status != UCS_OK) return false;
    }
    return true;
  }
  return a_->done && a_->status == UCS_OK && (b_ == nullptr || (b_->done && b_->status == UCS_OK));
}

void ReqAwaiter::await_suspend(std::coroutine_handle<>) const {
  op_->awaiting[0] = a_;
  op_->awaiting[1] = b_;
  op_->await_all = a_ == nullptr;
}

void Engine::OnPeerError(void* arg, ucp_ep_h, ucs_status_t status) {
  PeerSlot* slot = static_cast<PeerSlot*>(arg);
  slot->engine->MarkPeerFailed(slot->global_rank, status);
}

void Engine::MarkPeerFailed(int global_rank, ucs_status_t status) {
  PeerSlot& slot = *peers_[global_rank];
  if (slot.failed) return;
  slot.failed = true;
  slot.failure = status;
  slot.failed_at = Clock::now();
  slot.close_pending = slot.ctl_ep != nullptr;
  ++failed_peers_;
  // A peer that leaves while nothing here needs it (the normal end of a job: it finished
  // its last op and exited) is no alarm; ops that need it still fail, naming it.
  if (PeerNeededLocked(global_rank)) {
    LOG_WARN("UCX: rank {} lost global rank {}: {}", world_rank_, global_rank,
             ucs_status_string(status));
  } else {
    LOG_DEBUG("UCX: rank {}: peer {} disconnected ({})", world_rank_, global_rank,
              ucs_status_string(status));
  }
}

// Calls f(comm_rank) for every member whose failure fails `op`: its watched ranks, or
// (none watched) every member of its communicator.
template <typename F>
static void ForEachNeededRank(const Op& op, F f) {
  if (op.watched.empty()) {
    for (int r = 0; r < op.comm->size; ++r) f(r);
  } else {
    for (int r : op.watched) f(r);
  }
}

bool Engine::PeerNeededLocked(int global_rank) {
  auto needs = [&](const Op& op) {
    if (op.done.load(std::memory_order_acquire)) return false;
    bool needed = false;
    ForEachNeededRank(op, [&](int r) { needed |= op.comm->global_ranks[r] == global_rank; });
    return needed;
  };
  for (const auto& comm : comms_) {
    for (const auto& op : comm->collectives) {
      if (needs(*op)) return true;
    }
    for (const auto& op : comm->others) {
      if (needs(*op)) return true;
    }
  }
  std::lock_guard<std::mutex> lock(queue_mu_);  // lock order: mu_, then queue_mu_
  for (const auto& op : incoming_) {
    if (needs(*op)) return true;
  }
  return false;
}

// ------------------------------------------------------------------------ comms

std::shared_ptr<CommState> Engine::NewComm(uint32_t id, int rank, std::vector<int> global_ranks,
                                           const CommOptions& options) {
  auto comm = std::make_shared<CommState>();
  comm->engine = this;
  comm->id = id;
  comm->rank = rank;
  comm->size = static_cast<int>(global_ranks.size());
  comm->global_ranks = std::move(global_ranks);
  comm->options = options;
  std::lock_guard<std::mutex> lock(mu_);
  comms_.push_back(comm);
  return comm;
}

void Engine::AbortComm(CommState* comm, const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (comm->failed.ok()) comm->failed = status;
    const Clock::time_point now = Clock::now();
    for (auto& op : comm->collectives) {
      if (op->started && !op->draining) FailLocked(*op, status, now);
    }
    for (auto& op : comm->others) {
      if (op->started && !op->draining) FailLocked(*op, status, now);
    }
  }
  WakeProgressThread();
}

void Engine::CloseComm(CommState* comm) {
  AbortComm(comm, absl::CancelledError(absl::StrCat(
                      "UCX communicator ", comm->id, " was destroyed with the op pending")));
  std::lock_guard<std::mutex> lock(mu_);
  comm->closed = true;
  Backoff backoff(spin_rounds_);
  while (true) {
    bool idle = comm->collectives.empty() && comm->others.empty();
    if (idle) {
      std::lock_guard<std::mutex> q(queue_mu_);
      for (const auto& op : incoming_) idle &= op->comm.get() != comm;
    }
    if (idle) break;
    backoff.Pause(ProgressLocked());
  }
  comms_.erase(std::remove_if(comms_.begin(), comms_.end(),
                              [comm](const auto& c) { return c.get() == comm; }),
               comms_.end());
}

uint32_t Engine::ProposeCommId() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_comm_id_;
}

void Engine::CommitCommId(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  next_comm_id_ = std::max(next_comm_id_, id + 1);
}

// ---------------------------------------------------------------------- driving

void Engine::Submit(std::shared_ptr<Op> op) {
  active_ops_.fetch_add(1);
  bool wake;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    // A napping progress thread finds a small op by itself within kNap; waking it costs
    // the issuing thread a futex call and, on a busy core, a context switch (≈ 2-3 µs, as
    // much as a whole small all-reduce), and the issuer usually calls Wait() at once.
    wake = (deep_sleep_ || op->urgent) && waiters_.load() == 0;
    incoming_.push_back(std::move(op));
    incoming_count_.store(static_cast<int>(incoming_.size()), std::memory_order_release);
  }
  if (wake) queue_cv_.notify_one();
}

void Engine::WakeProgressThread() {
  { std::lock_guard<std::mutex> lock(queue_mu_); }
  queue_cv_.notify_one();
}

absl::Status Engine::Wait(Op& op) {
  if (!op.done.load(std::memory_order_acquire)) {
    waiters_.fetch_add(1);
    Backoff backoff(spin_rounds_);
    while (!op.done.load(std::memory_order_acquire)) {
      bool progressed = false;
      if (mu_.try_lock()) {
        progressed = ProgressLocked();
        mu_.unlock();
      }
      backoff.Pause(progressed);
    }
    if (waiters_.fetch_sub(1) == 1 && active_ops_.load() > 0) WakeProgressThread();
  }
  return op.status;
}

bool Engine::Poll(Op& op) {
  if (op.done.load(std::memory_order_acquire)) return true;
  if (mu_.try_lock()) {
    ProgressLocked();
    mu_.unlock();
  }
  return op.done.load(std::memory_order_acquire);
}

void Engine::ProgressThreadMain() {
  Clock::time_point last_activity = Clock::now();
  Clock::time_point last_round = last_activity;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      auto has_work = [this] { return stop_ || (waiters_.load() == 0 && active_ops_.load() > 0); };
      // Nap while ops came recently (Submit does not wake a napping thread); sleep deeply
      // (and be woken by Submit) after kDeepSleepAfter without ops.
      if (Clock::now() - last_activity < kDeepSleepAfter) {
        queue_cv_.wait_for(lock, kNap, has_work);
      } else {
        deep_sleep_ = true;
        queue_cv_.wait_for(lock, kIdleRound, has_work);
        deep_sleep_ = false;
      }
      if (stop_) return;
    }
    const Clock::time_point now = Clock::now();
    if (active_ops_.load() == 0 || waiters_.load() > 0) {
      // Idle: one round every kIdleRound all the same (UCX keepalive and error callbacks
      // need progress).
      if (now - last_round >= kIdleRound) {
        std::lock_guard<std::mutex> lock(mu_);
        ProgressLocked();
        last_round = now;
      }
      continue;
    }
    Backoff backoff(spin_rounds_);
    while (true) {
      bool progressed;
      {
        std::lock_guard<std::mutex> lock(mu_);
        progressed = ProgressLocked();
      }
      if (waiters_.load() > 0 || active_ops_.load() == 0) break;
      {
        std::lock_guard<std::mutex> lock(queue_mu_);
        if (stop_) return;
      }
      backoff.Pause(progressed);
    }
    last_activity = last_round = Clock::now();
  }
}

bool Engine::ProgressLocked() {
  bool progressed = false;
  if (incoming_count_.load(std::memory_order_acquire) > 0) {
    std::vector<std::shared_ptr<Op>> accepted;
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      accepted.swap(incoming_);
      incoming_count_.store(0, std::memory_order_relaxed);
    }
    for (auto& op : accepted) AcceptLocked(std::move(op));
    progressed = true;
  }
  for (int i = 0; i < 8 && ucp_worker_progress(worker_) != 0; ++i) progressed = true;
  // The control worker (TCP: an epoll call per progress) every round only while it carries
  // data or control ops, else once per kControlRound, for failure reports.
  const Clock::time_point now = Clock::now();
  if (ctl_busy_ > 0 || data_on_ctl_ || now - last_ctl_round_ >= kControlRound) {
    for (int i = 0; i < 8 && ucp_worker_progress(ctl_worker_) != 0; ++i) progressed = true;
    last_ctl_round_ = now;
  }
  if (!pending_acks_.empty()) PostAcksLocked();
  // Endpoints whose peers failed: force-close them (their requests complete with errors).
  if (failed_peers_ > 0) {
    for (auto& slot : peers_) {
      if (!slot->close_pending) continue;
      slot->close_pending = false;
      // The PEER-mode control endpoint only: force-closing a NONE-mode endpoint is not
      // defined; its stuck requests are abandoned instead (see the header).
      ForceClose(slot->ctl_ep);
      if (slot->data_ep == slot->ctl_ep) slot->data_ep = nullptr;
      slot->ctl_ep = nullptr;
      progressed = true;
    }
  }
  for (size_t c = 0; c < comms_.size(); ++c) {
    CommState& comm = *comms_[c];
    while (!comm.collectives.empty()) {
      std::shared_ptr<Op> op = comm.collectives.front();
      if (!AdvanceLocked(*op, now)) break;
      comm.collectives.pop_front();
      progressed = true;
    }
    for (size_t i = 0; i < comm.others.size();) {
      if (AdvanceLocked(*comm.others[i], now)) {
        comm.others[i] = std::move(comm.others.back());
        comm.others.pop_back();
        progressed = true;
      } else {
        ++i;
      }
    }
  }
  if (!pending_acks_.empty()) PostAcksLocked();
  if (!zombies_.empty()) {
    zombies_.erase(std::remove_if(zombies_.begin(), zombies_.end(),
                                  [](const auto& op) { return op->in_flight == 0; }),
                   zombies_.end());
  }
  return progressed;
}

void Engine::AcceptLocked(std::shared_ptr<Op> op) {
  CommState& comm = *op->comm;
  if (op->control_lane) ++ctl_busy_;
  if (comm.closed) {
    FinishLocked(*op, absl::CancelledError(absl::StrCat(
                          op->Name(), ": communicator ", comm.id, " was already destroyed")));
    return;
  }
  if (op->kind == OpKind::kCollective) {
    comm.collectives.push_back(std::move(op));
  } else {
    comm.others.push_back(std::move(op));
  }
}

std::string Engine::PeerName(const CommState& comm, int comm_rank) const {
  return absl::StrCat("rank ", comm_rank, " (global rank ", comm.global_ranks[comm_rank], ")");
}

static std::string OpContext(const Op& op) {
  return absl::StrCat("UCX comm ", op.comm->id, " rank ", op.comm->rank, "/", op.comm->size,
                      ": ", op.Name());
}

std::string Engine::FailedPeersText(const Op& op) const {
  if (failed_peers_ == 0) return "";
  const CommState& comm = *op.comm;
  std::vector<int> failed;
  ForEachNeededRank(op, [&](int comm_rank) {
    if (peers_[comm.global_ranks[comm_rank]]->failed) failed.push_back(comm_rank);
  });
  if (failed.empty()) return "";
  std::stable_sort(failed.begin(), failed.end(), [&](int a, int b) {
    return peers_[comm.global_ranks[a]]->failed_at < peers_[comm.global_ranks[b]]->failed_at;
  });
  std::string text;
  for (size_t i = 0; i < failed.size(); ++i) {
    const PeerSlot& slot = *peers_[comm.global_ranks[failed[i]]];
    absl::StrAppend(&text, i == 0 ? "" : i == 1 ? "; also failed: " : ", ",
                    PeerName(comm, failed[i]), i == 0 ? " failed (" : " (",
                    ucs_status_string(slot.failure), ")");
  }
  return text;
}

absl::Status Engine::CheckPeersLocked(Op& op, Clock::time_point now) {
  if (failed_peers_ == 0) return absl::OkStatus();
  const CommState& comm = *op.comm;
  bool expired = false;
  ForEachNeededRank(op, [&](int comm_rank) {
    const PeerSlot& slot = *peers_[comm.global_ranks[comm_rank]];
    expired |= slot.failed && now - slot.failed_at >= kPeerFailureGrace;
  });
  if (!expired) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(OpContext(op), ": ", FailedPeersText(op),
                                             "; the process died or became unreachable"));
}

// Direct messages are copied when the op body waits for them (just before it reduces
// them, while the copy is in cache), not when their descriptors arrive.
void Engine::CopyAwaitedLocked(Op& op) {
  if (op.ready_descriptors.empty()) return;
  if (op.await_all) {
    for (Req* r : op.ready_descriptors) {
      if (!r->done) DirectRead(*r, /*fuse=*/true);
    }
    op.ready_descriptors.clear();
    return;
  }
  for (Req* r : op.awaiting) {
    if (r != nullptr && r->direct && r->is_recv && r->descriptor_ready && !r->done) {
      DirectRead(*r, /*fuse=*/true);
    }
  }
}

static bool ReadyToResume(const Op& op) {
  if (op.await_all) {
    for (const Req& r : op.reqs) {
      if (!r.done) return false;
    }
    return true;
  }
  for (const Req* r : op.awaiting) {
    if (r != nullptr && !r->done) return false;
  }
  return true;
}

bool Engine::AdvanceLocked(Op& op, Clock::time_point now) {
  CommState& comm = *op.comm;
  if (!op.started) {
    if (!comm.failed.ok()) {
      FinishLocked(op, absl::Status(comm.failed.code(),
                                    absl::StrCat(OpContext(op), ": communicator failed earlier: ",
                                                 comm.failed.message())));
      return true;
    }
    op.started = true;
    op.last_progress = now;
    op.task.resume();
  }
  if (op.progressed) {
    op.progressed = false;
    op.last_progress = now;
  }
  if (op.draining) {
    if (op.in_flight == 0) {
      FinishLocked(op, op.status);
      return true;
    }
    if (now < op.drain_deadline) return false;
    if (!op.forced_close) {
      // Requests still stuck after the grace: their peers are failed (for every
      // communicator of this process); closing the control endpoints completes the
      // requests of remote peers and tells the peers.
      for (const Req& r : op.reqs) {
        if (!r.done) MarkPeerFailed(comm.global_ranks[r.peer], UCS_ERR_TIMED_OUT);
      }
      op.forced_close = true;
      op.drain_deadline = now + kDrainGrace;
      return false;
    }
    LOG_WARN("{}: abandoning {} UCX requests that did not end after the failure", OpContext(op),
             op.in_flight);
    // The abandoned requests may still point into the scratch: leak it on purpose.
    (void)comm.scratch.release();
    comm.scratch_bytes = 0;
    FinishLocked(op, op.status);
    return true;
  }
  if (op.failed_req == nullptr && comm.failed.ok()) {
    while (!op.task.done() && op.failed_req == nullptr) {
      CopyAwaitedLocked(op);
      if (!ReadyToResume(op)) break;
      op.awaiting[0] = op.awaiting[1] = nullptr;
      op.await_all = false;
      op.progressed = false;
      op.last_progress = now;
      op.task.resume();
    }
    // Blocked on something else (an acknowledgement, say): copy the oldest waiting
    // message all the same, so that two ranks waiting for each other's acknowledgements
    // always move.
    if (!op.task.done() && op.failed_req == nullptr) {
      while (!op.ready_descriptors.empty() && op.ready_descriptors.front()->done) {
        op.ready_descriptors.pop_front();
      }
      if (!op.ready_descriptors.empty()) {
        DirectRead(*op.ready_descriptors.front());
        op.ready_descriptors.pop_front();
      }
    }
    if (op.task.done() && op.failed_req == nullptr) {
      absl::Status result = op.task.result();
      if (!result.ok()) {
        FailLocked(op, result, now);
        return AdvanceLocked(op, now);
      }
      COL_CHECK_MSG(op.in_flight == 0, "an op body returned with requests in flight");
      FinishLocked(op, absl::OkStatus());
      return true;
    }
  }
  if (op.failed_req != nullptr) {
    const Req& r = *op.failed_req;
    std::string what;
    if (r.status == UCS_ERR_MESSAGE_TRUNCATED) {
      what = absl::StrCat("the message from ", PeerName(comm, r.peer), " is not the ", r.bytes,
                          " bytes expected (got ", r.received,
                          "; count or dtype differ between ranks?)");
    } else {
      // Name the earliest-failed peer first: in a cascade, the peer of this request may
      // only have failed because of it.
      what = FailedPeersText(op);
      absl::StrAppend(&what, what.empty() ? "" : "; ", r.is_recv ? "receive from " : "send to ",
                      PeerName(comm, r.peer), " failed: ", ucs_status_string(r.status));
    }
    FailLocked(op, absl::UnavailableError(absl::StrCat(OpContext(op), ": ", what)), now);
    return AdvanceLocked(op, now);
  }
  if (!comm.failed.ok()) {
    FailLocked(op, comm.failed, now);
    return AdvanceLocked(op, now);
  }
  absl::Status peers = CheckPeersLocked(op, now);
  if (!peers.ok()) {
    FailLocked(op, peers, now);
    return AdvanceLocked(op, now);
  }
  if (now - op.last_progress > comm.options.timeout) {
    // Name the peer we are waiting for: a pending receive first, else a pending send.
    const Req* blocker = nullptr;
    for (const Req& r : op.reqs) {
      if (!r.done && (blocker == nullptr || (r.is_recv && !blocker->is_recv))) blocker = &r;
    }
    std::string who = blocker != nullptr
                          ? absl::StrCat(blocker->is_recv ? "a message from " : "delivery to ",
                                         PeerName(comm, blocker->peer))
                          : std::string("its peers");
    std::string failed = FailedPeersText(op);
    FailLocked(op, absl::DeadlineExceededError(absl::StrCat(
                       OpContext(op), ": no progress for ", comm.options.timeout.count(),
                       " ms waiting for ", who,
                       " (the peer is stuck, silent or dead, or did not issue the same op)",
                       failed.empty() ? "" : "; ", failed)),
               now);
    return AdvanceLocked(op, now);
  }
  return false;
}

void Engine::FailLocked(Op& op, absl::Status status, Clock::time_point now) {
  if (op.draining) return;
  op.draining = true;
  op.status = std::move(status);
  op.drain_deadline = now + kDrainGrace;
  if (op.comm->failed.ok()) op.comm->failed = op.status;
  // Cancel the receives (plain, descriptor and acknowledgement); sends end by themselves.
  for (Req& r : op.reqs) {
    if (r.done) continue;
    if (r.is_recv && r.handles[0] != nullptr) ucp_request_cancel(r.worker, r.handles[0]);
    if (r.handles[1] != nullptr) ucp_request_cancel(r.worker, r.handles[1]);
  }
}

void Engine::FinishLocked(Op& op, absl::Status status) {
  op.status = std::move(status);
  if (op.control_lane) --ctl_busy_;
  if (op.in_flight == 0) {
    op.task.Reset();
  } else {
    // Keep the op (its requests point into it) until UCX lets go of them.
    for (auto& c : op.comm->collectives) {
      if (c.get() == &op) zombies_.push_back(c);
    }
    for (auto& c : op.comm->others) {
      if (c.get() == &op) zombies_.push_back(c);
    }
  }
  op.done.store(true, std::memory_order_release);
  active_ops_.fetch_sub(1);
}

}  // namespace colossal::parallel::ucx
