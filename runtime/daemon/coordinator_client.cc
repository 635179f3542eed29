// NodeService stub with deadlines, token, backoff reset and cancellation.
#include "runtime/daemon/coordinator_client.h"

#include <grpcpp/channel.h>

#include "runtime/base/status_macros.h"

namespace colossal::daemon {

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Create(
    const std::string& address, const rpc::SecurityOptions& security,
    std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::string token, rpc::ReadToken(security.token_file));
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, rpc::MakeChannel(address, security));
  return std::unique_ptr<CoordinatorClient>(
      new CoordinatorClient(std::move(channel), std::move(token), timeout));
}

CoordinatorClient::CoordinatorClient(std::shared_ptr<grpc::Channel> channel, std::string token,
                                     std::chrono::milliseconds timeout)
    : channel_(std::move(channel)),
      stub_(v1::NodeService::NewStub(channel_)),
      token_(std::move(token)),
      timeout_(timeout) {}

template <typename Call>
grpc::Status CoordinatorClient::Run(Call&& call) {
  std::unique_ptr<grpc::ClientContext> context = rpc::NewContext(timeout_, token_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return grpc::Status(grpc::StatusCode::CANCELLED, "daemon stopping");
    in_flight_ = context.get();
  }
  grpc::Status status = call(context.get());
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ = nullptr;
  return status;
}

absl::StatusOr<v1::RegisterNodeResponse> CoordinatorClient::Register(
    const v1::RegisterNodeRequest& request) {
  v1::RegisterNodeResponse response;
  grpc::Status status = Run([&](grpc::ClientContext* context) {
    return stub_->Register(context, request, &response);
  });
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  grpc::Status status = Run([&](grpc::ClientContext* context) {
    return stub_->Heartbeat(context, request, &response);
  });
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

void CoordinatorClient::ResetBackoff() { grpc::experimental::ChannelResetConnectionBackoff(channel_.get()); }

void CoordinatorClient::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (in_flight_ != nullptr) in_flight_->TryCancel();
}

}  // namespace colossal::daemon
