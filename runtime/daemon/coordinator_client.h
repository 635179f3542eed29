// The daemon's side of NodeService: one channel to the coordinator, Register and
// Heartbeat with a deadline and the bearer token on every call, and a Cancel that ends
// the call in flight (so Stop never waits out a deadline). Does not own retry policy
// or what the calls carry (node_daemon.cc does).
// Thread-safe: Cancel may be called from any thread while a call runs on another.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "proto/coordinator.grpc.pb.h"
#include "runtime/rpc/rpc.h"

namespace colossal::daemon {

class CoordinatorClient {
 public:
  // Reads the token file now (its errors are returned); connects lazily.
  static absl::StatusOr<std::unique_ptr<CoordinatorClient>> Create(
      const std::string& address, const rpc::SecurityOptions& security,
      std::chrono::milliseconds timeout);

  absl::StatusOr<v1::RegisterNodeResponse> Register(const v1::RegisterNodeRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);

  // Lets the next call try to connect at once instead of waiting out gRPC's own
  // reconnect backoff (which grows to minutes); the daemon paces retries itself.
  void ResetBackoff();
  // Cancels the call in flight and fails every later call with CANCELLED.
  void Cancel();

 private:
  CoordinatorClient(std::shared_ptr<grpc::Channel> channel, std::string token,
                    std::chrono::milliseconds timeout);
  // Runs `call` with a fresh context that Cancel can reach.
  template <typename Call>
  grpc::Status Run(Call&& call);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::NodeService::Stub> stub_;
  const std::string token_;
  const std::chrono::milliseconds timeout_;

  std::mutex mu_;
  grpc::ClientContext* in_flight_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;                    // guarded by mu_
};

}  // namespace colossal::daemon
