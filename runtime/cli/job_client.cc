// JobService client.
#include "runtime/cli/job_client.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace colossal::cli {

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

absl::StatusOr<std::unique_ptr<JobClient>> JobClient::Connect(const ClientOptions& options) {
  auto channel = rpc::MakeChannel(options.coordinator, options.security);
  if (!channel.ok()) return channel.status();
  auto token = rpc::ReadToken(options.security.token_file);
  if (!token.ok()) return token.status();
  std::unique_ptr<JobClient> client(new JobClient());
  client->options_ = options;
  client->token_ = *token;
  client->stub_ = v1::JobService::NewStub(*channel);
  return client;
}

namespace {
absl::Status Annotate(const grpc::Status& s, const std::string& coordinator) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat("coordinator ", coordinator, " unreachable: ", s.error_message(),
                     " (start one with `colossald --coordinator`, or pass --coordinator HOST:PORT)"));
  }
  return rpc::FromGrpc(s);
}
}  // namespace

template <typename Request, typename Response>
absl::StatusOr<Response> JobClient::Call(
    grpc::Status (v1::JobService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request) {
  Response response;
  auto context = rpc::NewContext(options_.timeout, token_);
  grpc::Status s = (stub_.get()->*method)(context.get(), request, &response);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return response;
}

template <typename Open, typename Message>
absl::Status JobClient::ReadStream(Open open,
                                   const std::function<bool(const Message&)>& on_message) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::OkStatus();
    streams_.push_back(context.get());
  }
  auto reader = open(context.get());
  Message message;
  bool stopped = false;
  while (reader->Read(&message)) {
    if (!on_message(message)) {
      stopped = true;
      context->TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(streams_, context.get());
  }
  if (stopped || cancelled_ || s.error_code() == grpc::StatusCode::CANCELLED) return absl::OkStatus();
  return s.ok() ? absl::OkStatus() : Annotate(s, options_.coordinator);
}

absl::StatusOr<v1::SubmitJobResponse> JobClient::Submit(const v1::SubmitJobRequest& request) {
  return Call(&v1::JobService::Stub::SubmitJob, request);
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  return Call(&v1::JobService::Stub::GetJob, request);
}

absl::StatusOr<std::vector<v1::Job>> JobClient::List(bool active_only, int limit) {
  v1::ListJobsRequest request;
  request.set_active_only(active_only);
  request.set_limit(limit);
  ASSIGN_OR_RETURN(v1::ListJobsResponse response, Call(&v1::JobService::Stub::ListJobs, request));
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  return Call(&v1::JobService::Stub::CancelJob, request);
}

absl::StatusOr<std::vector<v1::NodeInfo>> JobClient::Nodes() {
  ASSIGN_OR_RETURN(v1::ListNodesResponse response,
                   Call(&v1::JobService::Stub::ListNodes, v1::ListNodesRequest()));
  return std::vector<v1::NodeInfo>(response.nodes().begin(), response.nodes().end());
}

absl::Status JobClient::Watch(const std::string& job_id,
                              const std::function<bool(const v1::JobEvent&)>& on_event) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  return ReadStream([&](grpc::ClientContext* c) { return stub_->WatchJob(c, request); }, on_event);
}

absl::Status JobClient::Logs(const std::string& job_id, int rank, bool follow,
                             const std::function<bool(const v1::LogChunk&)>& on_chunk) {
  v1::StreamLogsRequest request;
  request.set_job_id(job_id);
  request.set_rank(rank);
  request.set_follow(follow);
  return ReadStream([&](grpc::ClientContext* c) { return stub_->StreamLogs(c, request); }, on_chunk);
}

void JobClient::CancelStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (grpc::ClientContext* c : streams_) c->TryCancel();
}

}  // namespace colossal::cli
