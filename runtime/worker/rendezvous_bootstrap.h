// A Bootstrap (parallel/comm/communicator.h) through the coordinator's Rendezvous
// service: for workers started by node daemons. One AllGather per object — Join with this
// rank's blob returns every rank's once the whole attempt has joined (bounded by the
// timeout; a superseded attempt is ABORTED).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"
#include "proto/coordinator.grpc.pb.h"
#include "runtime/rpc/rpc.h"

namespace colossal::worker {

class RendezvousBootstrap : public parallel::Bootstrap {
 public:
  static absl::StatusOr<std::unique_ptr<RendezvousBootstrap>> Create(
      const std::string& coordinator, const rpc::SecurityOptions& security,
      const std::string& job_id, int attempt, int rank, int size,
      std::chrono::milliseconds timeout);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::StatusOr<std::vector<std::string>> AllGather(const std::string& blob) override;

 private:
  RendezvousBootstrap() = default;
  std::unique_ptr<v1::Rendezvous::Stub> stub_;
  std::string token_;
  std::string job_id_;
  int attempt_ = 0, rank_ = 0, size_ = 1;
  std::chrono::milliseconds timeout_{};
  bool used_ = false;
};

}  // namespace colossal::worker
