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

  // Drops the channel and makes a new one, so the next call connects at once instead of
  // waiting out the old channel's reconnect schedule (gRPC 1.51 spaces attempts of a
  // failed subchannel by its connect timeout, and ChannelResetConnectionBackoff does not
  // shorten that); the daemon paces its retries itself.
  void Reconnect();
  // Cancels the call in flight and fails every later call with CANCELLED.
  void Cancel();

 private:
  CoordinatorClient(std::string address, rpc::SecurityOptions security, std::string token,
                    std::chrono::milliseconds timeout);
  // Runs `call` with a fresh context that Cancel can reach.
  template <typename Call>
  grpc::Status Run(Call&& call);

  const std::string address_;
  const rpc::SecurityOptions security_;
  const std::string token_;
  const std::chrono::milliseconds timeout_;

  std::mutex mu_;
  std::shared_ptr<v1::NodeService::Stub> stub_;  // guarded by mu_ (Reconnect swaps it)
  grpc::ClientContext* in_flight_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;                    // guarded by mu_
};

}  // namespace colossal::daemon
