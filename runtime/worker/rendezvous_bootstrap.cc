// Bootstrap through the coordinator.
#include "runtime/worker/rendezvous_bootstrap.h"

#include "absl/strings/str_cat.h"

namespace colossal::worker {

absl::StatusOr<std::unique_ptr<RendezvousBootstrap>> RendezvousBootstrap::Create(
    const std::string& coordinator, const rpc::SecurityOptions& security, const std::string& job_id,
    int attempt, int rank, int size, std::chrono::milliseconds timeout) {
  auto channel = rpc::MakeChannel(coordinator, security);
  if (!channel.ok()) return channel.status();
  auto token = rpc::ReadToken(security.token_file);
  if (!token.ok()) return token.status();
  std::unique_ptr<RendezvousBootstrap> b(new RendezvousBootstrap());
  b->stub_ = v1::Rendezvous::NewStub(*channel);
  b->token_ = *token;
  b->job_id_ = job_id;
  b->attempt_ = attempt;
  b->rank_ = rank;
  b->size_ = size;
  b->timeout_ = timeout;
  return b;
}

absl::StatusOr<std::vector<std::string>> RendezvousBootstrap::AllGather(const std::string& blob) {
  if (used_) {
    return absl::FailedPreconditionError("the coordinator's rendezvous exchanges one blob per attempt");
  }
  used_ = true;
  v1::JoinRequest request;
  request.set_job_id(job_id_);
  request.set_attempt(attempt_);
  request.set_rank(rank_);
  request.set_world_size(size_);
  request.set_endpoint(blob);
  v1::JoinResponse response;
  auto context = rpc::NewContext(timeout_, token_);
  grpc::Status s = stub_->Join(context.get(), request, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("rendezvous of job ", job_id_, " attempt ", attempt_, ": ",
                                     s.error_message()));
  }
  if (response.endpoints_size() != size_) {
    return absl::InternalError(absl::StrCat("rendezvous returned ", response.endpoints_size(),
                                            " endpoints for ", size_, " ranks"));
  }
  return std::vector<std::string>(response.endpoints().begin(), response.endpoints().end());
}

}  // namespace colossal::worker
