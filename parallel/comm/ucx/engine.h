// Engine: one UCP context + worker + an endpoint per global rank, shared by a world
// communicator and every communicator split from it, and the machinery that runs
// operations on them. Owns UCX objects, the progress thread, peer-failure tracking and
// the tag space; does not own the algorithms (algorithms.h) or the public API
// (ucx_communicator.h).
//
// Execution model
//   * An operation (Op) is a C++20 coroutine (OpTask) that posts tagged sends/receives
//     and co_awaits their completion; it runs only on a "driver" thread holding the
//     engine lock: the progress thread, or a thread blocked in Wait() (which drives
//     progress itself rather than sleeping, so a waiting rank costs one thread, not two).
//   * Collectives of one communicator run one at a time in issue order; point-to-point
//     and control operations start as soon as they are issued.
//   * A round of progress: accept new ops, ucp_worker_progress, then advance every
//     active op whose awaited requests are done.
//
// Tags (64 bits): comm id (20) | sender's rank in the comm (16) | kind (2) | payload (26).
//   collective payload: op sequence (10) | slot (16); p2p payload: the user's tag;
//   control payload: Split agreement and the wire-up handshake.
// Receives match all 64 bits, so communicators, senders and operations never mix;
// messages with equal tags from one sender match in send order (UCX guarantee).
//
// Endpoints. UCX 1.13's shared-memory transports (posix, sysv; cma has no active
// messages) do not support UCP_ERR_HANDLING_MODE_PEER: a PEER-mode endpoint between two
// processes of one machine silently falls back to TCP over loopback, 5-10x slower. So
// each peer gets two endpoints:
//   * a control endpoint, UCP_ERR_HANDLING_MODE_PEER (TCP), which carries the wire-up
//     handshake and reports the peer's death (its connection resets when the process dies;
//     UCX keepalive, set to min(1 s, timeout/4), covers a vanished host);
//   * a data endpoint for the collectives: UCP_ERR_HANDLING_MODE_NONE for a peer on the
//     same machine (same /proc boot_id, memory readable with process_vm_readv) when UCX
//     puts it on shared memory; else the control endpoint itself (another machine, or
//     UCX_TLS without shared memory: a NONE endpoint over TCP would abort on a dead peer).
// Failure: an op fails when a peer it needs has been reported failed (after a short grace,
// since a peer that finished and exited may have left its last messages in our queues), or
// when none of its requests completed for `timeout` (the error names the peer it waits
// for). A failed op cancels its receives and waits briefly for in-flight requests; those
// still stuck (a send to a dead peer on a NONE endpoint never completes) are abandoned to
// a zombie list and the peer is marked failed, with its control endpoint force-closed so
// that the peer learns of it. Wait() thus returns within the timeout plus a short grace.
// A lost peer is a warning only while an op in flight or queued depends on it; one that
// leaves while nothing needs it (the normal end of a job) is logged at debug level.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <ucp/api/ucp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"

namespace colossal::parallel::ucx {

using Clock = std::chrono::steady_clock;

class Engine;
class Op;
struct CommState;

// Tag layout (see the header comment).
enum class TagKind : uint32_t { kCollective = 0, kPointToPoint = 1, kControl = 2 };
inline constexpr int kMaxCommSize = 1 << 16;
inline constexpr uint32_t kMaxCommId = (1u << 19) - 1;
inline constexpr int64_t kMaxUserTag = (int64_t{1} << 26) - 1;
inline constexpr uint32_t kWireupPayload = (1u << 26) - 1;
// Messages to a peer on this machine of at least this many bytes move by direct copy.
// (16 KiB messages were faster through UCX's shared-memory eager path: 2-rank 16 KiB
// all-reduce 8.2 → 4.9 µs, 4-rank 16 KiB 36-39 → 21-24 µs; from 32 KiB the direct copy wins,
// e.g. 2-rank 64 KiB all-gather 5 µs direct, 7.5 µs eager.)
inline constexpr size_t kDirectMinBytes = 32 << 10;
// First word of a direct message's descriptor; XOR the rank, the word each engine keeps for
// peers to read when they probe whether direct copies work (Engine::ProbeDirectReads).
inline constexpr uint64_t kDescriptorMagic = 0xc01055a1d1ec7ull;

constexpr ucp_tag_t MakeTag(uint32_t comm_id, int src, TagKind kind, uint32_t payload,
                            bool ack = false) {
  return (ucp_tag_t{comm_id} << 45) | (ucp_tag_t(static_cast<uint32_t>(src)) << 29) |
         (ucp_tag_t{ack ? 1u : 0u} << 28) | (ucp_tag_t{static_cast<uint32_t>(kind)} << 26) |
         ucp_tag_t{payload & 0x3ffffffu};
}
// The tag of the acknowledgement of a direct message received with `tag` from comm rank
// `src`, sent by comm rank `dst`: same communicator, kind and payload.
constexpr ucp_tag_t AckTag(ucp_tag_t tag, int dst) {
  return (tag & ~(((ucp_tag_t{1} << 16) - 1) << 29)) | (ucp_tag_t(static_cast<uint32_t>(dst)) << 29) |
         (ucp_tag_t{1} << 28);
}

// One logical send or receive of an op. Lives in its op's `reqs` (stable addresses).
// A plain message is one UCX request. A direct message (a peer on this machine, at least
// kDirectMinBytes, the peer able to read our memory): the sender posts a descriptor
// {magic, address, bytes} and a receive for the acknowledgement; the receiver takes the
// descriptor, copies the bytes out of the sender's memory with process_vm_readv (one copy,
// like UCX's cma rendezvous, but a dead sender is an error here, not an abort) and
// acknowledges, after which the sender's buffer is free.
struct Req {
  Op* op = nullptr;
  int peer = -1;            // rank in the op's communicator
  bool is_recv = false;
  bool direct = false;
  bool descriptor_ready = false;  // direct receive: descriptor in, bytes not yet copied
  bool done = false;
  ucs_status_t status = UCS_OK;
  size_t bytes = 0;         // posted size
  size_t received = 0;      // receives: length of the matched message
  int pending = 0;          // UCX requests of this Req still in flight
  void* handles[2] = {nullptr, nullptr};  // [0] send or receive, [1] ack receive
  ucp_worker_h worker = nullptr;  // where its receives are posted
  void* dst = nullptr;      // direct receive: destination (RecvReduce: the staging area)
  ucp_tag_t tag = 0;        // direct receive: the tag it came with (to acknowledge)
  uint64_t desc[3] = {0, 0, 0};  // direct: {magic, address, bytes}
  // Op::RecvReduce: sum_dst = sum_a + the message. `reduced`: the engine formed the sum
  // itself while copying (direct message copied when the body awaited it).
  bool reduce = false;
  bool reduced = false;
  kernels::DType reduce_dtype = kernels::DType::kF32;
  void* sum_dst = nullptr;
  const void* sum_a = nullptr;
};

// The coroutine type of an op body. co_return the op's status.
class OpTask {
 public:
  struct promise_type {
    absl::Status result;
    OpTask get_return_object() {
      return OpTask(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(absl::Status status) { result = std::move(status); }
    void unhandled_exception() { result = absl::InternalError("exception in an op body"); }
  };
  OpTask() = default;
  explicit OpTask(std::coroutine_handle<promise_type> h) : handle_(h) {}
  OpTask(OpTask&& other) noexcept : handle_(other.handle_) { other.handle_ = {}; }
  OpTask& operator=(OpTask&& other) noexcept {
    Reset();
    handle_ = other.handle_;
    other.handle_ = {};
    return *this;
  }
  ~OpTask() { Reset(); }
  void Reset() {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  bool valid() const { return static_cast<bool>(handle_); }
  bool done() const { return handle_.done(); }
  void resume() { handle_.resume(); }
  const absl::Status& result() const { return handle_.promise().result; }

 private:
  std::coroutine_handle<promise_type> handle_;
};

// Awaits one or two requests, or (both null) every request of the op.
class ReqAwaiter {
 public:
  ReqAwaiter(Op* op, Req* a, Req* b) : op_(op), a_(a), b_(b) {}
  bool await_ready() const;
  void await_suspend(std::coroutine_handle<>) const;
  void await_resume() const {}

 private:
  Op* op_;
  Req* a_;
  Req* b_;
};

enum class OpKind { kCollective, kPointToPoint, kControl };

// One operation. Created by the issuing thread, run by drivers under the engine lock,
// completed (done) exactly once; Wait()/Done() read `done` and `status`.
class Op {
 public:
  // `label` names the op in errors; ops on the hot path pass none and set `describe`
  // (formatted only when an error needs it).
  Op(std::shared_ptr<CommState> comm, OpKind kind, std::string label = "");
  ~Op();

  // --- For op bodies (driver thread, engine lock held). ---
  int rank() const;
  int size() const;
  const CommOptions& options() const;
  // Posts a send of `bytes` at `buf` to `peer` (rank in the comm). Collective ops tag it
  // with (sequence, slot); point-to-point ops with `slot` as the user tag.
  Req* Send(const void* buf, size_t bytes, int peer, uint32_t slot);
  // Posts a receive of exactly `bytes` into `buf` from `peer`.
  Req* Recv(void* buf, size_t bytes, int peer, uint32_t slot);
  // Posts a receive of `bytes` (count elements of `dtype`) from `peer` to be added:
  // after the body awaited it and called FinishReduce, dst = a + message (dst may alias
  // a). A direct message is copied in L2-sized pieces into `staging`, each summed into
  // dst as soon as it lands (one pass over cache-hot data instead of copy, then sum);
  // that happens only once the body awaits this request (Wait on it, or WaitAll), so dst
  // and a must be ready then. Otherwise the message lands whole in `staging` (`bytes`
  // of it) and FinishReduce sums it.
  Req* RecvReduce(void* dst, const void* a, void* staging, size_t bytes, int peer,
                  uint32_t slot, kernels::DType dtype);
  // After awaiting a RecvReduce request: forms the sum unless the copy already did.
  void FinishReduce(Req* req);
  // (No braced lists inside co_await: GCC 12 miscompiles initializer_list temporaries
  // that live across a suspension.)
  ReqAwaiter Wait(Req* a) { return ReqAwaiter(this, a, nullptr); }
  ReqAwaiter Wait(Req* a, Req* b) { return ReqAwaiter(this, a, b); }
  ReqAwaiter WaitAll() { return ReqAwaiter(this, nullptr, nullptr); }
  // Communicator-owned scratch of at least `bytes` (64-byte aligned), reused by the
  // communicator's collectives (which run one at a time).
  char* Scratch(size_t bytes);

  // --- Set by the issuer before Submit. ---
  OpTask task;
  bool control_lane = false;  // sends go through the peers' control endpoints
  bool urgent = false;        // large (≥ 4 MiB): wake a napping progress thread at once
  std::vector<int> watched;  // comm ranks whose failure fails the op (empty: all members)
  uint32_t seq = 0;          // collectives: sequence in the comm (mod 1024 in tags)

  // --- Engine state (engine lock). ---
  std::shared_ptr<CommState> comm;
  const OpKind kind;
  std::string label;
  std::string (*describe)(const Op&) = nullptr;
  int64_t args[4] = {0, 0, 0, 0};  // for `describe`
  std::string Name() const { return describe != nullptr ? describe(*this) : label; }
  std::deque<Req> reqs;
  std::deque<Req*> ready_descriptors;  // direct receives whose descriptor came, by arrival
  Req* awaiting[2] = {nullptr, nullptr};  // what the body waits for (null: nothing)
  bool await_all = false;
  int in_flight = 0;
  Req* failed_req = nullptr;
  bool progressed = false;
  bool started = false;
  bool draining = false;
  bool forced_close = false;
  Clock::time_point last_progress;
  Clock::time_point drain_deadline;

  // --- Completion (any thread). ---
  absl::Status status;  // written before `done` is set
  std::atomic<bool> done{false};
};

// Engine-side state of one communicator.
struct CommState {
  Engine* engine = nullptr;
  uint32_t id = 0;
  int rank = 0;
  int size = 0;
  std::vector<int> global_ranks;  // by comm rank
  CommOptions options;

  // Payload bytes of collective and point-to-point sends (Communicator::bytes_sent).
  std::atomic<int64_t> bytes_sent{0};

  // Issuing thread only.
  uint32_t next_seq = 0;
  std::map<std::vector<int>, uint32_t> split_counts;

  // Engine lock.
  std::deque<std::shared_ptr<Op>> collectives;   // front is the running one
  std::vector<std::shared_ptr<Op>> others;       // point-to-point and control
  absl::Status failed;                           // set once: every later op fails with it
  bool closed = false;
  std::unique_ptr<char, void (*)(void*)> scratch{nullptr, nullptr};
  size_t scratch_bytes = 0;
  // Issuing thread, after the wire-up: every member's data moves by direct copy
  // (-1: not known yet; see Engine::AllLocal).
  int all_local = -1;
};

class Engine {
 public:
  // Creates the UCP context and worker, exchanges worker addresses through `bootstrap`,
  // creates an endpoint to every rank and runs a wire-up handshake between all pairs.
  static absl::StatusOr<std::shared_ptr<Engine>> Create(Bootstrap& bootstrap,
                                                        const CommOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

  // The world communicator's state (id 1, members 0..size-1).
  std::shared_ptr<CommState> NewComm(uint32_t id, int rank, std::vector<int> global_ranks,
                                     const CommOptions& options);
  // Fails every pending op of `comm` with CANCELLED, waits for them, unregisters it.
  void CloseComm(CommState* comm);
  // Fails pending and later ops of `comm` with `status`.
  void AbortComm(CommState* comm, const absl::Status& status);

  // Queues an op (any thread; the issuing thread for ops of one comm).
  void Submit(std::shared_ptr<Op> op);
  // Blocks until `op` is done, driving progress; returns its status.
  absl::Status Wait(Op& op);
  // One round of progress if no other thread is driving; whether `op` is done.
  bool Poll(Op& op);

  // The next communicator id this process would propose (engine lock not needed:
  // issuing thread), and the record of an agreed one.
  uint32_t ProposeCommId();
  void CommitCommId(uint32_t id);

  // Set-up of the data path (CreateUcxCommunicator, after the control wire-up):
  // whether this process can read each peer's memory with process_vm_readv (1/0 by global
  // rank; peers on other machines 0), then the data endpoints from both directions' answers.
  std::vector<uint64_t> ProbeDirectReads() const;
  // Whether every other member of `comm` is a peer of this machine reached by direct
  // copies (issuing thread, after the wire-up; cached in comm.all_local).
  bool AllLocal(CommState& comm) const;
  absl::Status CreateDataEndpoints(const std::vector<uint64_t>& i_read_them,
                                   const std::vector<uint64_t>& they_read_me);

  // --- For Op (engine lock held). ---
  Req* PostSend(Op& op, const void* buf, size_t bytes, int peer, ucp_tag_t tag,
                bool control = false);
  Req* PostRecv(Op& op, void* buf, size_t bytes, int peer, ucp_tag_t tag);

  // --- For the request callbacks (transfer.cc; engine lock held). ---
  // Copies a direct message whose descriptor came, completes `req`, queues the ack.
  // `fuse`: a RecvReduce request is summed piece by piece during the copy (only when
  // the op body awaits it).
  void DirectRead(Req& req, bool fuse = false);
  void QueueAck(int global_rank, ucp_tag_t tag) { pending_acks_.push_back({global_rank, tag}); }
  // Logs a warning only when an op in flight or queued needs the peer (else, info).
  void MarkPeerFailed(int global_rank, ucs_status_t status);

 private:
  struct PeerSlot {
    Engine* engine = nullptr;
    int global_rank = -1;
    bool same_boot = false;      // same machine (equal /proc boot_id)
    pid_t pid = 0;               // its process id (meaningful when same_boot)
    uint64_t magic_address = 0;  // where its engine keeps its magic (direct-read probe)
    bool local = false;          // direct copies work both ways
    ucp_ep_h data_ep = nullptr;  // collectives and point-to-point: NONE mode on shared
                                 // memory, else == ctl_ep
    ucp_ep_h ctl_ep = nullptr;   // PEER mode (TCP): wire-up and failure reports
    bool failed = false;
    bool close_pending = false;
    ucs_status_t failure = UCS_OK;
    Clock::time_point failed_at;
  };

  Engine() = default;
  absl::Status Init(Bootstrap& bootstrap, const CommOptions& options);
  static void OnPeerError(void* arg, ucp_ep_h ep, ucs_status_t status);
  void PostAcksLocked();
  // Whether an op in flight or queued depends on `global_rank` (its comm's members, or
  // its watched ranks).
  bool PeerNeededLocked(int global_rank);
  void CopyAwaitedLocked(Op& op);
  // The endpoint a message to `slot` goes through, and the worker on which a message from
  // it arrives (control lane: the control endpoint where there is one).
  ucp_ep_h SendEndpoint(const PeerSlot& slot, bool control) const;
  ucp_worker_h ReceiveWorker(const PeerSlot& slot, bool control) const;
  // A UCP_ERR_HANDLING_MODE_NONE endpoint of the data worker to `global_rank`.
  ucs_status_t CreateDataEndpoint(int global_rank, ucp_ep_h* ep);
  // Closes `ep` without flushing: its requests complete with errors.
  static void ForceClose(ucp_ep_h ep);

  bool ProgressLocked();
  void AcceptLocked(std::shared_ptr<Op> op);
  bool AdvanceLocked(Op& op, Clock::time_point now);  // true when the op finished
  void FailLocked(Op& op, absl::Status status, Clock::time_point now);
  void FinishLocked(Op& op, absl::Status status);
  std::string PeerName(const CommState& comm, int comm_rank) const;
  absl::Status CheckPeersLocked(Op& op, Clock::time_point now);
  // "rank 1 (global rank 1) failed (Endpoint timeout)[; also failed: ...]" for the
  // members the op depends on that UCX reported failed, earliest first; "" when none.
  std::string FailedPeersText(const Op& op) const;
  void ProgressThreadMain();
  void WakeProgressThread();

  int world_rank_ = 0;
  int world_size_ = 0;
  uint64_t magic_ = 0;  // read by peers to prove that direct copies work
  std::vector<std::pair<int, ucp_tag_t>> pending_acks_;  // (global rank, tag) to send
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;      // data endpoints to peers of this machine
  ucp_worker_h ctl_worker_ = nullptr;  // control endpoints (TCP), also data to other machines
  int ctl_busy_ = 0;                   // control-lane ops accepted and not finished
  int spin_rounds_ = 4096;             // idle rounds a driver spins before yielding
  bool data_on_ctl_ = false;           // some peer's data goes through the control worker
  Clock::time_point last_ctl_round_;
  std::vector<std::unique_ptr<PeerSlot>> peers_;  // by global rank
  std::vector<std::string> addresses_;           // UCX worker address by global rank
  int failed_peers_ = 0;

  std::mutex mu_;  // the engine lock: UCX calls, comms_, op engine state
  std::vector<std::shared_ptr<CommState>> comms_;
  std::vector<std::shared_ptr<Op>> zombies_;  // failed ops whose requests never ended
  uint32_t next_comm_id_ = 2;                // 1 is the world

  std::mutex queue_mu_;  // incoming_, and the progress thread's sleep
  std::condition_variable queue_cv_;
  std::vector<std::shared_ptr<Op>> incoming_;
  std::atomic<int> incoming_count_{0};
  std::atomic<int> active_ops_{0};
  std::atomic<int> waiters_{0};
  bool stop_ = false;
  bool deep_sleep_ = false;  // the progress thread sleeps until Submit wakes it
  std::thread progress_thread_;
};

}  // namespace colossal::parallel::ucx
