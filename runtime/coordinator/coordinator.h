// Coordinator: the job store, scheduler and gRPC server of `colossald --coordinator`
// (ARCHITECTURE.md, "Processes and ports"). One server carries JobService (job.proto),
// NodeService, Rendezvous and WorkerService (coordinator.proto), grpc.health.v1 (a
// serving status per service, and "" for the whole server) and server reflection.
// Every RPC but health needs the bearer token when options.security names a token file.
//
// State lives in options.state_dir: state.db (SQLite, see job_store.h), logs/<job>/
// attempt-<a>/rank-<r>.log, and a lock file that keeps a second coordinator off the
// same directory. A coordinator started on an existing state dir keeps every job with
// its state, attempt and step, and re-attaches the workers that re-registering daemons
// report (scheduler.h). MASTER_PORT of an attempt: placement.h.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/rpc/rpc.h"

namespace colossal::coordinator {

class EventHub;
class JobStore;
class LogStore;
class RendezvousTable;
class Scheduler;

struct CoordinatorOptions {
  std::string listen = "127.0.0.1:29500";  // port 0: pick a free port
  std::string state_dir;          // SQLite store (state.db) and job logs; created if absent
  rpc::SecurityOptions security;  // token file, TLS (runtime/rpc/rpc.h)
  int64_t heartbeat_ms = 500;     // told to daemons
  int64_t lease_ms = 10000;       // a silent node counts as lost after this
  int64_t stop_grace_ms = 10000;  // SIGTERM → SIGKILL grace told to daemons
};

class Coordinator {
 public:
  // Opens the state dir, restores its jobs and nodes, and starts serving. Errors:
  // INVALID_ARGUMENT (options), FAILED_PRECONDITION (state dir in use, listener policy
  // of rpc::MakeServerCredentials), UNAVAILABLE (cannot listen, cannot open the store).
  static absl::StatusOr<std::unique_ptr<Coordinator>> Start(const CoordinatorOptions& options);
  ~Coordinator();  // Shutdown()

  // "HOST:PORT" with the port actually bound; a wildcard host reads as 127.0.0.1.
  std::string address() const { return address_; }
  // Stops serving (open streams end with UNAVAILABLE, waiting joins too), saves what is
  // not yet stored, closes the store and frees the state dir. Idempotent, thread-safe.
  void Shutdown();
  // Blocks until Shutdown() has finished.
  void Wait();

 private:
  explicit Coordinator(const CoordinatorOptions& options);
  absl::Status Init();
  void TickLoop();

  const CoordinatorOptions options_;
  std::string address_;
  int lock_fd_ = -1;
  std::unique_ptr<rpc::TokenAuth> auth_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<LogStore> logs_;
  std::unique_ptr<RendezvousTable> rendezvous_;
  std::unique_ptr<EventHub> events_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<bool> stopping_{false};
  std::thread ticker_;

  std::mutex mu_;  // guards the two flags below
  std::condition_variable changed_;
  bool shutdown_started_ = false;
  bool shutdown_done_ = false;
};

}  // namespace colossal::coordinator
