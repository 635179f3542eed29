// The daemon's loop: register, heartbeat, apply starts and stops, reap, retry with
// backoff while the coordinator is away.
#include "runtime/daemon/node_daemon.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"
#include "runtime/daemon/coordinator_client.h"
#include "runtime/daemon/supervisor.h"

namespace colossal::daemon {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kVersion[] = "colossald 0.1";
constexpr auto kTick = std::chrono::milliseconds(50);  // reap and grace resolution
constexpr int64_t kFirstRetryMs = 100;
constexpr int64_t kMinHeartbeatMs = 10;  // whatever a Register answer says

std::string Hostname() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string Absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

}  // namespace

struct NodeDaemon::Impl {
  DaemonOptions options;
  std::string hostname;
  std::unique_ptr<CoordinatorClient> client;
  std::unique_ptr<Supervisor> supervisor;
  std::vector<v1::Device> devices;  // discovered on the loop thread before the first Register
  bool devices_known = false;
  int64_t heartbeat_ms = 500;

  absl::Status Register();
  // OK with *reregister set when the coordinator does not know this node.
  absl::Status Heartbeat(bool* reregister);
};

absl::Status NodeDaemon::Impl::Register() {
  if (!devices_known) {
    devices = DiscoverDevices();
    devices_known = true;
  }
  v1::RegisterNodeRequest request;
  request.set_node_id(options.node_id);
  request.set_hostname(hostname);
  request.set_address(options.address);
  request.set_slots(options.slots);
  for (const v1::Device& d : devices) *request.add_devices() = d;
  for (v1::RunningWorker& r : supervisor->Running()) *request.add_running() = std::move(r);
  request.set_version(kVersion);
  request.set_cpu_cores(OnlineCpuCores());
  ASSIGN_OR_RETURN(v1::RegisterNodeResponse response, client->Register(request));
  if (response.heartbeat_ms() > 0) heartbeat_ms = std::max<int64_t>(kMinHeartbeatMs, response.heartbeat_ms());
  if (!response.node_id().empty() && response.node_id() != options.node_id) {
    LOG_WARN("coordinator answered node id {} to node {}; keeping {}", response.node_id(),
             options.node_id, options.node_id);
  }
  LOG_INFO("registered with coordinator {} as node {} ({} running workers, heartbeat {} ms)",
           options.coordinator, options.node_id, request.running_size(), heartbeat_ms);
  return absl::OkStatus();
}

absl::Status NodeDaemon::Impl::Heartbeat(bool* reregister) {
  Outgoing out = supervisor->Collect(kLogBytesPerHeartbeat);
  v1::HeartbeatRequest request;
  request.set_node_id(options.node_id);
  for (v1::RunningWorker& r : supervisor->Running()) *request.add_running() = std::move(r);
  for (const v1::WorkerExit& e : out.exits) *request.add_exits() = e;
  for (const v1::LogChunk& c : out.logs) *request.add_logs() = c;
  auto response = client->Heartbeat(request);
  if (absl::IsNotFound(response.status())) {
    *reregister = true;
    return absl::OkStatus();  // it answered: nothing it was sent counts as received
  }
  if (!response.ok()) return response.status();
  supervisor->Acknowledge(out);
  // Starts first: a start and a stop of the same attempt in one answer still give that
  // rank a process and an exit (stops of older attempts are unaffected by the order).
  for (const v1::Assignment& a : response->start()) supervisor->Start(a);
  for (const v1::StopAttempt& stop : response->stop()) supervisor->StopAttempt(stop);
  *reregister = response->reregister();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NodeDaemon>> NodeDaemon::Start(const DaemonOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  DaemonOptions& o = impl->options;
  RETURN_IF_ERROR(rpc::SplitHostPort(o.coordinator).status());
  if (o.slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("slots must be >= 1, not ", o.slots));
  }
  if (o.heartbeat_ms < 1 || o.rpc_timeout_ms < 1) {
    return absl::InvalidArgumentError(absl::StrCat("heartbeat_ms (", o.heartbeat_ms,
                                                   ") and rpc_timeout_ms (", o.rpc_timeout_ms,
                                                   ") must be >= 1"));
  }
  impl->hostname = Hostname();
  if (o.node_id.empty()) o.node_id = absl::StrCat(impl->hostname, "-", getpid());
  if (o.state_dir.empty()) o.state_dir = absl::StrCat("/tmp/colossald-", o.node_id);
  o.state_dir = Absolute(o.state_dir);
  std::error_code ec;
  fs::create_directories(o.state_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create state dir ", o.state_dir, ": ", ec.message()));
  }
  if (o.worker_command.empty()) {
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return absl::InternalError(absl::StrCat("/proc/self/exe: ", ec.message()));
    o.worker_command = {(self.parent_path() / "colossal-worker").string()};
  }
  impl->heartbeat_ms = o.heartbeat_ms;
  ASSIGN_OR_RETURN(impl->client,
                   CoordinatorClient::Create(o.coordinator, o.security,
                                             std::chrono::milliseconds(o.rpc_timeout_ms)));
  SupervisorOptions sup;
  sup.state_dir = o.state_dir;
  sup.worker_command = o.worker_command;
  sup.coordinator = o.coordinator;
  sup.token_file = Absolute(o.security.token_file);
  sup.tls_ca = Absolute(o.security.tls_ca);
  impl->supervisor = std::make_unique<Supervisor>(std::move(sup));

  std::unique_ptr<NodeDaemon> daemon(new NodeDaemon(std::move(impl)));
  LOG_INFO("node daemon {} starting: coordinator {}, {} slots, state dir {}", daemon->node_id(),
           options.coordinator, options.slots, daemon->state_dir());
  daemon->thread_ = std::thread([d = daemon.get()] { d->Run(); });
  return daemon;
}

NodeDaemon::NodeDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

const std::string& NodeDaemon::node_id() const { return impl_->options.node_id; }
const std::string& NodeDaemon::state_dir() const { return impl_->options.state_dir; }

NodeDaemon::~NodeDaemon() { Stop(/*kill_workers=*/true); }

void NodeDaemon::Run() {
  Impl& s = *impl_;
  auto next_call = Clock::now();
  int64_t retry_ms = kFirstRetryMs;
  bool registered = false;
  bool connected = false;
  bool lost_logged = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_) break;
    }
    const int exited = s.supervisor->Poll();
    auto now = Clock::now();
    if (now >= next_call || (exited > 0 && connected && registered)) {
      absl::Status status = absl::OkStatus();
      bool reregister = false;
      if (!registered) {
        status = s.Register();
        registered = status.ok();
      }
      if (status.ok()) status = s.Heartbeat(&reregister);
      now = Clock::now();
      if (status.ok()) {
        if (!connected && lost_logged) {
          LOG_INFO("coordinator {} back; {} running workers, {} exits queued",
                   s.options.coordinator, s.supervisor->running_count(),
                   s.supervisor->queued_exits());
        }
        connected = true;
        lost_logged = false;
        retry_ms = kFirstRetryMs;
        if (reregister) {
          LOG_INFO("coordinator {} does not know node {}; registering again",
                   s.options.coordinator, s.options.node_id);
          registered = false;
          next_call = now;
        } else {
          next_call = now + std::chrono::milliseconds(s.heartbeat_ms);
        }
      } else {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_requested_) break;  // the call was cancelled by Stop
        }
        if (!lost_logged) {
          LOG_WARN("coordinator {} lost: {}; workers keep running, retrying",
                   s.options.coordinator, status.ToString());
          lost_logged = true;
        } else {
          LOG_DEBUG("coordinator {} still away: {}", s.options.coordinator, status.ToString());
        }
        connected = false;
        next_call = now + std::chrono::milliseconds(retry_ms);
        retry_ms = std::min(retry_ms * 2, kMaxRetryMs);
        s.client->Reconnect();
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, std::min(next_call, Clock::now() + kTick),
                   [this] { return stop_requested_; });
  }
  std::unique_lock<std::mutex> lock(mu_);
  loop_stopped_ = true;
  cv_.notify_all();
  // Workers die with this thread (parent-death signal): stay until told to kill them.
  cv_.wait(lock, [this] { return kill_requested_; });
  const int64_t grace_ms = kill_grace_ms_;
  lock.unlock();
  if (s.supervisor->running_count() > 0) {
    LOG_INFO("node daemon {} stopping {} workers (grace {} ms)", s.options.node_id,
             s.supervisor->running_count(), grace_ms);
  }
  s.supervisor->KillAll(grace_ms);
}

void NodeDaemon::Stop(bool kill_workers, int64_t grace_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    if (kill_workers && !kill_requested_) {
      kill_requested_ = true;
      kill_grace_ms_ = grace_ms;
    }
  }
  cv_.notify_all();
  impl_->client->Cancel();
  if (kill_workers) {
    std::lock_guard<std::mutex> join(join_mu_);
    if (thread_.joinable()) thread_.join();
    return;
  }
  Wait();
}

void NodeDaemon::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return loop_stopped_; });
}

}  // namespace colossal::daemon
