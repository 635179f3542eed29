// Engine (engine.h) set-up and teardown: the UCX context and workers, the exchange of
// worker addresses through the bootstrap, the wire-up of every pair of ranks, and the
// flush and close of endpoints when the engine goes. (Posting, completion and progress
// are in engine.cc and transfer.cc.)
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "parallel/comm/ucx/engine.h"
#include "runtime/base/check.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel::ucx {
namespace {

// Bound of endpoint flushes at teardown.
constexpr auto kCloseGrace = std::chrono::milliseconds(1000);

absl::Status UcsError(const std::string& what, ucs_status_t status) {
  return absl::UnavailableError(absl::StrCat(what, ": ", ucs_status_string(status)));
}

constexpr size_t kBootIdBytes = 36;

void AppendU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// /proc/sys/kernel/random/boot_id: equal on two processes of one machine (and kernel).
std::string MachineBootId() {
  std::string id(kBootIdBytes, ' ');
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char buf[64] = {0};
    if (std::fgets(buf, sizeof(buf), f) != nullptr) {
      for (size_t i = 0; i < kBootIdBytes && buf[i] != '\0' && buf[i] != '\n'; ++i) id[i] = buf[i];
    }
    std::fclose(f);
  }
  return id;
}


}  // namespace


absl::StatusOr<std::shared_ptr<Engine>> Engine::Create(Bootstrap& bootstrap,
                                                       const CommOptions& options) {
  std::shared_ptr<Engine> engine(new Engine());
  RETURN_IF_ERROR(engine->Init(bootstrap, options));
  return engine;
}

absl::Status Engine::Init(Bootstrap& bootstrap, const CommOptions& options) {
  world_rank_ = bootstrap.rank();
  world_size_ = bootstrap.size();
  if (world_size_ > kMaxCommSize) {
    return absl::InvalidArgumentError(absl::StrCat("UCX communicator: world size ",
                                                   world_size_, " exceeds ", kMaxCommSize));
  }
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcsError("ucp_config_read", st);
  // A killed peer is noticed by UCX's keepalive; make its period a fraction of ours.
  int64_t keepalive_ms = std::clamp<int64_t>(options.timeout.count() / 4, 100, 1000);
  std::string keepalive = absl::StrCat(keepalive_ms, "ms");
  ucp_config_modify(config, "KEEPALIVE_INTERVAL", keepalive.c_str());
  // Never rendezvous: on a NONE-mode (shared-memory) endpoint UCX's rendezvous uses cma,
  // and UCX aborts the process when a cma peer dies. Large messages to peers on this
  // machine take the engine's own direct copy instead (engine.h).
  ucp_config_modify(config, "RNDV_THRESH", "inf");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG;
  params.estimated_num_eps = static_cast<size_t>(world_size_);
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) return UcsError("ucp_init", st);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // the engine lock serialises
  st = ucp_worker_create(context_, &worker_params, &worker_);
  if (st != UCS_OK) return UcsError("ucp_worker_create", st);
  st = ucp_worker_create(context_, &worker_params, &ctl_worker_);
  if (st != UCS_OK) return UcsError("ucp_worker_create", st);

  // Blob: boot id (36 characters, blanks if unknown), pid (8 bytes), the address of
  // magic_ (8 bytes), the data worker's address length (8 bytes) and address, then the
  // control worker's address.
  magic_ = kDescriptorMagic ^ static_cast<uint64_t>(world_rank_);
  const std::string boot_id = MachineBootId();
  std::string blob = boot_id;
  AppendU64(blob, static_cast<uint64_t>(getpid()));
  AppendU64(blob, reinterpret_cast<uintptr_t>(&magic_));
  for (ucp_worker_h w : {worker_, ctl_worker_}) {
    ucp_address_t* address = nullptr;
    size_t address_length = 0;
    st = ucp_worker_get_address(w, &address, &address_length);
    if (st != UCS_OK) return UcsError("ucp_worker_get_address", st);
    if (w == worker_) AppendU64(blob, address_length);
    blob.append(reinterpret_cast<const char*>(address), address_length);
    ucp_worker_release_address(w, address);
  }

  ASSIGN_OR_RETURN(std::vector<std::string> blobs, bootstrap.AllGather(blob));
  if (static_cast<int>(blobs.size()) != world_size_) {
    return absl::InternalError("UCX communicator: bootstrap returned a wrong number of blobs");
  }
  constexpr size_t kHeader = kBootIdBytes + 24;
  peers_.resize(world_size_);
  addresses_.resize(world_size_);
  std::vector<std::string> ctl_addresses(world_size_);
  bool warned = false;
  for (int r = 0; r < world_size_; ++r) {
    peers_[r] = std::make_unique<PeerSlot>();
    PeerSlot& slot = *peers_[r];
    slot.engine = this;
    slot.global_rank = r;
    const uint64_t data_length =
        blobs[r].size() >= kHeader ? ReadU64(blobs[r].data() + kBootIdBytes + 16) : 0;
    if (blobs[r].size() <= kHeader || data_length == 0 ||
        data_length >= blobs[r].size() - kHeader) {
      return absl::InvalidArgumentError(
          absl::StrCat("UCX communicator: rank ", r, " sent a malformed address blob"));
    }
    slot.same_boot = blobs[r].compare(0, kBootIdBytes, boot_id) == 0 &&
                     boot_id != std::string(kBootIdBytes, ' ');
    slot.pid = static_cast<pid_t>(ReadU64(blobs[r].data() + kBootIdBytes));
    slot.magic_address = ReadU64(blobs[r].data() + kBootIdBytes + 8);
    addresses_[r] = blobs[r].substr(kHeader, data_length);
    ctl_addresses[r] = blobs[r].substr(kHeader + data_length);
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                           UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(ctl_addresses[r].data());
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb = &Engine::OnPeerError;
    ep_params.err_handler.arg = &slot;
    st = ucp_ep_create(ctl_worker_, &ep_params, &slot.ctl_ep);
    if (st == UCS_OK) continue;
    slot.ctl_ep = nullptr;
    if (!slot.same_boot) {
      return UcsError(absl::StrCat("UCX communicator: endpoint to rank ", r,
                                   " (another machine; UCX_TLS must allow tcp)"), st);
    }
    if (!warned) {
      LOG_WARN("UCX: no failure-reporting (PEER mode) endpoint to ranks of this machine ({}); "
               "UCX_TLS lacks tcp? A dead peer will surface as a timeout",
               ucs_status_string(st));
      warned = true;
    }
    // Without a control endpoint, the wire-up needs the data endpoint now.
    st = CreateDataEndpoint(r, &slot.data_ep);
    if (st != UCS_OK) {
      slot.data_ep = nullptr;
      return UcsError(absl::StrCat("UCX communicator: endpoint to rank ", r), st);
    }
  }
  progress_thread_ = std::thread([this] { ProgressThreadMain(); });
  return absl::OkStatus();
}

ucs_status_t Engine::CreateDataEndpoint(int global_rank, ucp_ep_h* ep) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.address = reinterpret_cast<const ucp_address_t*>(addresses_[global_rank].data());
  params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
  return ucp_ep_create(worker_, &params, ep);
}

void Engine::ForceClose(ucp_ep_h ep) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  ucs_status_ptr_t req = ucp_ep_close_nbx(ep, &param);
  if (req != nullptr && !UCS_PTR_IS_ERR(req)) ucp_request_free(req);
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  if (worker_ != nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    // Flush-close every endpoint (so our last messages leave), bounded in time.
    // Endpoints to failed peers are left to ucp_worker_destroy.
    std::vector<void*> closing;
    for (auto& slot : peers_) {
      if (slot == nullptr || slot->failed) continue;
      std::vector<ucp_ep_h> eps = {slot->ctl_ep};
      if (slot->data_ep != slot->ctl_ep) eps.push_back(slot->data_ep);
      for (ucp_ep_h ep : eps) {
        if (ep == nullptr) continue;
        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = 0;  // flush: our last messages leave before the endpoint goes
        ucs_status_ptr_t req = ucp_ep_close_nbx(ep, &param);
        if (req != nullptr && !UCS_PTR_IS_ERR(req)) closing.push_back(req);
      }
      slot->data_ep = slot->ctl_ep = nullptr;
    }
    const Clock::time_point deadline = Clock::now() + kCloseGrace;
    while (!closing.empty() && Clock::now() < deadline) {
      ucp_worker_progress(worker_);
      ucp_worker_progress(ctl_worker_);
      for (size_t i = 0; i < closing.size();) {
        if (ucp_request_check_status(closing[i]) != UCS_INPROGRESS) {
          ucp_request_free(closing[i]);
          closing[i] = closing.back();
          closing.pop_back();
        } else {
          ++i;
        }
      }
    }
    ucp_worker_destroy(worker_);
    worker_ = nullptr;
    if (ctl_worker_ != nullptr) ucp_worker_destroy(ctl_worker_);
    ctl_worker_ = nullptr;
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

}  // namespace colossal::parallel::ucx
