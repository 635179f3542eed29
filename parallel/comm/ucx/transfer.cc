// Engine (engine.h), the message layer: posting tagged sends and receives, their
// completion callbacks, and the direct-copy path between processes of one machine
// (descriptor → process_vm_readv → acknowledgement).
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "parallel/comm/ucx/engine.h"
#include "parallel/comm/ucx/reduce.h"
#include "runtime/base/logging.h"

namespace colossal::parallel::ucx {
namespace {

// Piece of a direct message summed while in cache (Op::RecvReduce; a multiple of 64).
// 2-rank A/B, same build, 64 / 128 / 256 KiB: 4 MiB all-reduce 601-617 / 574-589 /
// 578-595 µs (whole-message copy, then sum: 647-654), 16 MiB reduce-scatter 1726-1805 /
// 1672-1690 / 1635-1700 (1966-1998).
constexpr size_t kReducePieceBytes = size_t{256} << 10;

// One UCX request of `req` ended (slot 0: the send or receive; 1: an ack receive).
void SubComplete(Req* req, int slot, ucs_status_t status) {
  Op* op = req->op;
  req->handles[slot] = nullptr;
  --req->pending;
  --op->in_flight;
  op->progressed = true;
  if (status != UCS_OK && req->status == UCS_OK) req->status = status;
  if (req->pending == 0) req->done = true;
  if (req->status != UCS_OK && op->failed_req == nullptr) op->failed_req = req;
}

void SendCallback(void* request, ucs_status_t status, void* user_data) {
  SubComplete(static_cast<Req*>(user_data), 0, status);
  ucp_request_free(request);
}

void AckCallback(void* request, ucs_status_t status, const ucp_tag_recv_info_t*,
                 void* user_data) {
  SubComplete(static_cast<Req*>(user_data), 1, status);
  ucp_request_free(request);
}

void RecvCallback(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
                  void* user_data) {
  Req* req = static_cast<Req*>(user_data);
  const size_t length = status == UCS_OK ? info->length : 0;  // info may live in `request`
  ucp_request_free(request);
  if (status == UCS_OK) {
    req->received = length;
    if (req->direct) {
      if (length == sizeof(req->desc) && req->desc[0] == kDescriptorMagic &&
          req->desc[2] == req->bytes) {
        // The descriptor is in; the copy waits until the op body needs the bytes.
        Op* op = req->op;
        req->handles[0] = nullptr;
        --op->in_flight;
        op->progressed = true;
        req->descriptor_ready = true;
        op->ready_descriptors.push_back(req);
        return;
      }
      req->received = length == sizeof(req->desc) ? req->desc[2] : length;
      status = UCS_ERR_MESSAGE_TRUNCATED;
    } else if (length != req->bytes) {
      status = UCS_ERR_MESSAGE_TRUNCATED;
    }
  }
  SubComplete(req, 0, status);
}

void AckSentCallback(void* request, ucs_status_t, void*) { ucp_request_free(request); }

// Whether UCX put the active-message lane of `ep` on shared memory (posix, sysv, self),
// read from its own description of the endpoint (UCX 1.13 has no query for it).
bool ActiveMessagesOnSharedMemory(ucp_ep_h ep) {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return false;
  ucp_ep_print_info(ep, out);
  std::fclose(out);
  bool shared = false;
  std::string info(text, size);
  std::free(text);
  size_t start = 0;
  while (start < info.size()) {
    size_t end = info.find('\n', start);
    if (end == std::string::npos) end = info.size();
    const std::string line = info.substr(start, end - start);
    if (line.find("lane[") != std::string::npos && line.find(" am") != std::string::npos &&
        (line.find("posix/") != std::string::npos || line.find("sysv/") != std::string::npos ||
         line.find("self/") != std::string::npos)) {
      shared = true;
    }
    start = end + 1;
  }
  return shared;
}

}  // namespace

// Reads [offset, offset + bytes) of the sender's buffer into `into`; 0 or an errno.
static int ReadRemote(pid_t pid, uint64_t address, size_t offset, char* into, size_t bytes) {
  size_t done = 0;
  while (done < bytes) {
    iovec local{into + done, bytes - done};
    iovec remote{reinterpret_cast<char*>(static_cast<uintptr_t>(address)) + offset + done,
                 bytes - done};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      if (err == EINTR) continue;
      return err;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

void Engine::DirectRead(Req& req, bool fuse) {
  const PeerSlot& slot = *peers_[req.op->comm->global_ranks[req.peer]];
  Op* op = req.op;
  req.descriptor_ready = false;
  req.pending = 0;
  req.done = true;
  op->progressed = true;
  int err = 0;
  if (fuse && req.reduce) {
    // Piece by piece through the start of the staging area, each piece summed while it
    // is in cache (pieces are whole elements: kReducePieceBytes is a multiple of 64).
    const int64_t es = kernels::DTypeSize(req.reduce_dtype);
    char* piece = static_cast<char*>(req.dst);
    for (size_t off = 0; off < req.bytes && err == 0; off += kReducePieceBytes) {
      const size_t len = std::min(kReducePieceBytes, req.bytes - off);
      err = ReadRemote(slot.pid, req.desc[1], off, piece, len);
      if (err == 0) {
        SumInto(static_cast<char*>(req.sum_dst) + off,
                static_cast<const char*>(req.sum_a) + off, piece,
                static_cast<int64_t>(len) / es, req.reduce_dtype);
      }
    }
    req.reduced = err == 0;
  } else {
    err = ReadRemote(slot.pid, req.desc[1], 0, static_cast<char*>(req.dst), req.bytes);
  }
  if (err != 0) {
    req.status = err == ESRCH ? UCS_ERR_CONNECTION_RESET : UCS_ERR_IO_ERROR;
    if (op->failed_req == nullptr) op->failed_req = &req;
    if (err == ESRCH) MarkPeerFailed(slot.global_rank, UCS_ERR_CONNECTION_RESET);
    LOG_WARN("UCX: direct copy of {} bytes from global rank {} failed: {}", req.bytes,
             slot.global_rank, std::strerror(err));
    return;
  }
  QueueAck(slot.global_rank, AckTag(req.tag, req.op->comm->rank));
}

void Engine::PostAcksLocked() {
  for (const auto& [global_rank, tag] : pending_acks_) {
    PeerSlot& slot = *peers_[global_rank];
    if (slot.failed || slot.data_ep == nullptr) continue;
    static const char kAck = 0;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK;
    param.cb.send = &AckSentCallback;
    ucs_status_ptr_t r = ucp_tag_send_nbx(slot.data_ep, &kAck, 0, tag, &param);
    (void)r;  // completes by itself (freed in the callback) or at once
  }
  pending_acks_.clear();
}

Req* Engine::PostSend(Op& op, const void* buf, size_t bytes, int peer, ucp_tag_t tag,
                      bool control) {
  Req& req = op.reqs.emplace_back();
  req.op = &op;
  req.peer = peer;
  req.bytes = bytes;
  PeerSlot& slot = *peers_[op.comm->global_ranks[peer]];
  ucp_ep_h ep = SendEndpoint(slot, control);
  req.direct = !control && slot.local && bytes >= kDirectMinBytes;
  req.worker = ReceiveWorker(slot, control);  // the acknowledgement of a direct send
  req.pending = req.direct ? 2 : 1;
  op.in_flight += req.pending;
  if (slot.failed || ep == nullptr) {
    const ucs_status_t why = slot.failed ? slot.failure : UCS_ERR_NOT_CONNECTED;
    for (int i = req.pending - 1; i >= 0; --i) SubComplete(&req, i, why);
    return &req;
  }
  if (req.direct) {
    // The acknowledgement first, so it is posted before the receiver can send it.
    ucp_request_param_t ack{};
    ack.op_attr_mask =
        UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    ack.cb.recv = &AckCallback;
    ack.user_data = &req;
    ucs_status_ptr_t a = ucp_tag_recv_nbx(req.worker, nullptr, 0, AckTag(tag, peer),
                                          ~ucp_tag_t{0}, &ack);
    if (UCS_PTR_IS_ERR(a)) {
      SubComplete(&req, 1, UCS_PTR_STATUS(a));
    } else if (a != nullptr && req.handles[1] == nullptr && req.pending == 2) {
      req.handles[1] = a;
    }
    req.desc[0] = kDescriptorMagic;
    req.desc[1] = reinterpret_cast<uintptr_t>(buf);
    req.desc[2] = bytes;
    buf = req.desc;
    bytes = sizeof(req.desc);
  }
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &SendCallback;
  param.user_data = &req;
  ucs_status_ptr_t r = ucp_tag_send_nbx(ep, buf, bytes, tag, &param);
  if (r == nullptr) {
    SubComplete(&req, 0, UCS_OK);
  } else if (UCS_PTR_IS_ERR(r)) {
    SubComplete(&req, 0, UCS_PTR_STATUS(r));
  } else {
    req.handles[0] = r;
  }
  return &req;
}

Req* Engine::PostRecv(Op& op, void* buf, size_t bytes, int peer, ucp_tag_t tag) {
  Req& req = op.reqs.emplace_back();
  req.op = &op;
  req.peer = peer;
  req.bytes = bytes;
  req.is_recv = true;
  req.pending = 1;
  ++op.in_flight;
  const PeerSlot& slot = *peers_[op.comm->global_ranks[peer]];
  req.direct = slot.local && bytes >= kDirectMinBytes && !op.control_lane;
  req.worker = ReceiveWorker(slot, op.control_lane);
  req.dst = buf;
  req.tag = tag;
  // UCX 1.13 leaves recv_info unset when a receive completes at once, so ask for the
  // callback always (it may run inside ucp_tag_recv_nbx): it checks the length.
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  param.cb.recv = &RecvCallback;
  param.user_data = &req;
  void* into = req.direct ? static_cast<void*>(req.desc) : buf;
  size_t length = req.direct ? sizeof(req.desc) : bytes;
  ucs_status_ptr_t r = ucp_tag_recv_nbx(req.worker, into, length, tag, ~ucp_tag_t{0}, &param);
  if (UCS_PTR_IS_ERR(r)) {
    SubComplete(&req, 0, UCS_PTR_STATUS(r));
  } else if (r != nullptr && !req.done) {
    req.handles[0] = r;
  }
  return &req;
}

ucp_ep_h Engine::SendEndpoint(const PeerSlot& slot, bool control) const {
  return control && slot.ctl_ep != nullptr ? slot.ctl_ep : slot.data_ep;
}

ucp_worker_h Engine::ReceiveWorker(const PeerSlot& slot, bool control) const {
  ucp_ep_h ep = SendEndpoint(slot, control);
  return ep != nullptr && ep == slot.ctl_ep ? ctl_worker_ : worker_;
}

std::vector<uint64_t> Engine::ProbeDirectReads() const {
  std::vector<uint64_t> ok(world_size_, 0);
  for (int r = 0; r < world_size_; ++r) {
    const PeerSlot& slot = *peers_[r];
    if (r == world_rank_ || !slot.same_boot) continue;
    uint64_t value = 0;
    iovec local{&value, sizeof(value)};
    iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(slot.magic_address)),
                 sizeof(value)};
    ssize_t n = process_vm_readv(slot.pid, &local, 1, &remote, 1, 0);
    ok[r] = n == sizeof(value) && value == (kDescriptorMagic ^ static_cast<uint64_t>(r));
    if (!ok[r]) {
      LOG_WARN("UCX: rank {} cannot read rank {}'s memory ({}); their messages go through "
               "UCX's TCP endpoint",
               world_rank_, r, n < 0 ? std::strerror(errno) : "wrong process");
    }
  }
  return ok;
}

bool Engine::AllLocal(CommState& comm) const {
  if (comm.all_local < 0) {
    bool all = true;
    for (int g : comm.global_ranks) all &= g == world_rank_ || peers_[g]->local;
    comm.all_local = all ? 1 : 0;
  }
  return comm.all_local == 1;
}

absl::Status Engine::CreateDataEndpoints(const std::vector<uint64_t>& i_read_them,
                                         const std::vector<uint64_t>& they_read_me) {
  std::lock_guard<std::mutex> lock(mu_);
  // More ranks on this machine than cores we may run on: drivers yield at once.
  int ranks_here = 0;
  for (int r = 0; r < world_size_; ++r) ranks_here += peers_[r]->same_boot || r == world_rank_;
  cpu_set_t cpus;
  const int cores = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  const int machine_cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  spin_rounds_ = ranks_here > std::max(cores, machine_cores) ? 16 : 4096;
  for (int r = 0; r < world_size_; ++r) {
    PeerSlot& slot = *peers_[r];
    const bool self = r == world_rank_;
    slot.local = !self && i_read_them[r] != 0 && they_read_me[r] != 0;
    if (!slot.local && !self && slot.data_ep == nullptr) {
      slot.data_ep = slot.ctl_ep;  // another machine (or no direct copies): TCP, PEER mode
      data_on_ctl_ = true;
      continue;
    }
    if (slot.data_ep != nullptr && slot.data_ep != slot.ctl_ep) continue;  // made in Init
    ucp_ep_h ep = nullptr;
    ucs_status_t st = CreateDataEndpoint(r, &ep);
    if (st != UCS_OK) {
      return absl::UnavailableError(absl::StrCat("UCX communicator: data endpoint to rank ", r,
                                                 ": ", ucs_status_string(st)));
    }
    // A NONE-mode endpoint is only safe on shared memory: over TCP (UCX_TLS without sm) a
    // dead peer would make UCX abort the process. Then the PEER-mode endpoint carries the
    // data (the direct copies still work: only their small messages change lanes).
    if (!self && slot.ctl_ep != nullptr && !ActiveMessagesOnSharedMemory(ep)) {
      ForceClose(ep);
      slot.data_ep = slot.ctl_ep;
      data_on_ctl_ = true;
      continue;
    }
    slot.data_ep = ep;
  }
  return absl::OkStatus();
}

}  // namespace colossal::parallel::ucx
