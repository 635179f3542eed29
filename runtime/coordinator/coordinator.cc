// Start-up (state dir, lock, store, restore, server with health and reflection), the
// housekeeping thread, and shutdown.
#include "runtime/coordinator/coordinator.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"
#include "runtime/coordinator/event_hub.h"
#include "runtime/coordinator/job_store.h"
#include "runtime/coordinator/log_store.h"
#include "runtime/coordinator/rendezvous.h"
#include "runtime/coordinator/scheduler.h"
#include "runtime/coordinator/services.h"

namespace colossal::coordinator {
namespace {

// How long in-flight RPCs get to finish at shutdown before they are cancelled.
constexpr std::chrono::seconds kShutdownGrace(2);

std::vector<std::string> ServiceNames() {
  return {v1::JobService::service_full_name(), v1::NodeService::service_full_name(),
          v1::Rendezvous::service_full_name(), v1::WorkerService::service_full_name()};
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& options) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("the coordinator needs a state dir (--state-dir DIR)");
  }
  if (options.heartbeat_ms <= 0 || options.lease_ms <= options.heartbeat_ms ||
      options.stop_grace_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat_ms (", options.heartbeat_ms, ") must be > 0 and below lease_ms (",
        options.lease_ms, "); stop_grace_ms (", options.stop_grace_ms, ") must be >= 0"));
  }
  std::unique_ptr<Coordinator> coordinator(new Coordinator(options));
  absl::Status status = coordinator->Init();
  if (!status.ok()) {
    coordinator->Shutdown();
    return status;
  }
  return coordinator;
}

absl::Status Coordinator::Init() {
  namespace fs = std::filesystem;
  const CoordinatorOptions& o = options_;
  std::error_code ec;
  fs::create_directories(fs::path(o.state_dir) / "logs", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the state dir ", o.state_dir, ": ", ec.message()));
  }
  const std::string lock_path = (fs::path(o.state_dir) / "coordinator.lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("state dir ", o.state_dir,
                                                      " is in use by another coordinator (",
                                                      lock_path, " is locked)"));
  }
  ASSIGN_OR_RETURN(std::string token, rpc::ReadToken(o.security.token_file));
  auth_ = std::make_unique<rpc::TokenAuth>(std::move(token));
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   rpc::MakeServerCredentials(o.listen, o.security));
  ASSIGN_OR_RETURN(auto host_port, rpc::SplitHostPort(o.listen));

  ASSIGN_OR_RETURN(store_, JobStore::Open((fs::path(o.state_dir) / "state.db").string()));
  logs_ = std::make_unique<LogStore>((fs::path(o.state_dir) / "logs").string());
  rendezvous_ = std::make_unique<RendezvousTable>();
  events_ = std::make_unique<EventHub>();
  scheduler_ =
      std::make_unique<Scheduler>(SchedulerOptions{o.heartbeat_ms, o.lease_ms, o.stop_grace_ms},
                                  store_.get(), logs_.get(), rendezvous_.get(), events_.get());
  RETURN_IF_ERROR(scheduler_->Restore());

  ServiceContext context{scheduler_.get(),  logs_.get(), events_.get(),
                         rendezvous_.get(), auth_.get(), &stopping_};
  services_.push_back(std::make_unique<JobServiceImpl>(context));
  services_.push_back(std::make_unique<NodeServiceImpl>(context));
  services_.push_back(std::make_unique<RendezvousServiceImpl>(context));
  services_.push_back(std::make_unique<WorkerServiceImpl>(context));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(o.listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  // gRPC binds with SO_REUSEPORT by default: a second coordinator on a taken port would
  // silently share its traffic. Fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (auto& service : services_) builder.RegisterService(service.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", o.listen, " (address in use?)"));
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    for (const std::string& name : ServiceNames()) health->SetServingStatus(name, true);
  }
  std::string host = host_port.first;
  if (host == "0.0.0.0" || host == "::" || host.empty()) host = "127.0.0.1";
  address_ = absl::StrCat(host.find(':') != std::string::npos ? "[" + host + "]" : host, ":", port);
  ticker_ = std::thread([this] { TickLoop(); });
  LOG_INFO("coordinator: serving on {} (state dir {}, token {}, TLS {})", address_, o.state_dir,
           auth_->enabled() ? "required" : "off", o.security.tls() ? "on" : "off");
  return absl::OkStatus();
}

void Coordinator::TickLoop() {
  const auto period =
      std::chrono::milliseconds(std::clamp<int64_t>(options_.heartbeat_ms / 2, 10, 100));
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_started_) {
    lock.unlock();
    scheduler_->Tick();
    lock.lock();
    changed_.wait_for(lock, period, [this] { return shutdown_started_; });
  }
}

void Coordinator::Shutdown() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_started_) {
      changed_.wait(lock, [this] { return shutdown_done_; });
      return;
    }
    shutdown_started_ = true;
  }
  changed_.notify_all();
  stopping_ = true;
  if (server_ != nullptr) {
    if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  }
  if (events_) events_->Close();
  if (rendezvous_) rendezvous_->Shutdown();
  if (logs_) logs_->Shutdown();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    server_->Wait();
    server_.reset();
  }
  if (ticker_.joinable()) ticker_.join();
  if (scheduler_) scheduler_->SaveAll();
  services_.clear();
  scheduler_.reset();
  store_.reset();  // commits and closes state.db
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
  if (!address_.empty()) LOG_INFO("coordinator: {} stopped", address_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_done_ = true;
  }
  changed_.notify_all();
}

void Coordinator::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [this] { return shutdown_done_; });
}

Coordinator::~Coordinator() { Shutdown(); }

}  // namespace colossal::coordinator
