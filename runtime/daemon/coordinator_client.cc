// NodeService stub with deadlines, token, reconnection and cancellation.
#include "runtime/daemon/coordinator_client.h"

#include <grpcpp/channel.h>

#include "runtime/base/status_macros.h"

namespace colossal::daemon {

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Create(
    const std::string& address, const rpc::SecurityOptions& security,
    std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::string token, rpc::ReadToken(security.token_file));
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, rpc::MakeChannel(address, security));
  std::unique_ptr<CoordinatorClient> client(
      new CoordinatorClient(address, security, std::move(token), timeout));
  client->stub_ = v1::NodeService::NewStub(std::move(channel));
  return client;
}

CoordinatorClient::CoordinatorClient(std::string address, rpc::SecurityOptions security,
                                     std::string token, std::chrono::milliseconds timeout)
    : address_(std::move(address)),
      security_(std::move(security)),
      token_(std::move(token)),
      timeout_(timeout) {}

template <typename Call>
grpc::Status CoordinatorClient::Run(Call&& call) {
  std::unique_ptr<grpc::ClientContext> context = rpc::NewContext(timeout_, token_);
  std::shared_ptr<v1::NodeService::Stub> stub;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return grpc::Status(grpc::StatusCode::CANCELLED, "daemon stopping");
    in_flight_ = context.get();
    stub = stub_;
  }
  grpc::Status status = call(*stub, context.get());
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ = nullptr;
  return status;
}

absl::StatusOr<v1::RegisterNodeResponse> CoordinatorClient::Register(
    const v1::RegisterNodeRequest& request) {
  v1::RegisterNodeResponse response;
  grpc::Status status = Run([&](v1::NodeService::Stub& stub, grpc::ClientContext* context) {
    return stub.Register(context, request, &response);
  });
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  grpc::Status status = Run([&](v1::NodeService::Stub& stub, grpc::ClientContext* context) {
    return stub.Heartbeat(context, request, &response);
  });
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

void CoordinatorClient::Reconnect() {
  // The address and credentials were accepted by Create, so this cannot fail in practice;
  // if it does, keep the old channel (its own schedule still reconnects, only later).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = rpc::MakeChannel(address_, security_);
  if (!channel.ok()) return;
  std::shared_ptr<v1::NodeService::Stub> stub = v1::NodeService::NewStub(*std::move(channel));
  std::lock_guard<std::mutex> lock(mu_);
  stub_ = std::move(stub);
}

void CoordinatorClient::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (in_flight_ != nullptr) in_flight_->TryCancel();
}

}  // namespace colossal::daemon
