// JobService client.
#include "runtime/cli/job_client.h"

#include "absl/strings/str_cat.h"

namespace colossal::cli {

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

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

std::unique_ptr<grpc::ClientContext> JobClient::Context() const {
  return rpc::NewContext(options_.timeout, token_);
}

std::unique_ptr<grpc::ClientContext> JobClient::StreamContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  return context;
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

absl::StatusOr<v1::SubmitJobResponse> JobClient::Submit(const v1::SubmitJobRequest& request) {
  v1::SubmitJobResponse response;
  auto context = Context();
  grpc::Status s = stub_->SubmitJob(context.get(), request, &response);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return response;
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = Context();
  grpc::Status s = stub_->GetJob(context.get(), request, &job);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return job;
}

absl::StatusOr<std::vector<v1::Job>> JobClient::List(bool active_only, int limit) {
  v1::ListJobsRequest request;
  request.set_active_only(active_only);
  request.set_limit(limit);
  v1::ListJobsResponse response;
  auto context = Context();
  grpc::Status s = stub_->ListJobs(context.get(), request, &response);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  auto context = Context();
  grpc::Status s = stub_->CancelJob(context.get(), request, &job);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return job;
}

absl::StatusOr<std::vector<v1::NodeInfo>> JobClient::Nodes() {
  v1::ListNodesResponse response;
  auto context = Context();
  grpc::Status s = stub_->ListNodes(context.get(), v1::ListNodesRequest(), &response);
  if (!s.ok()) return Annotate(s, options_.coordinator);
  return std::vector<v1::NodeInfo>(response.nodes().begin(), response.nodes().end());
}

absl::Status JobClient::Watch(const std::string& job_id,
                              const std::function<bool(const v1::JobEvent&)>& on_event) {
  auto context = StreamContext();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::OkStatus();
    streams_.push_back(context.get());
  }
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto reader = stub_->WatchJob(context.get(), request);
  v1::JobEvent event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
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

absl::Status JobClient::Logs(const std::string& job_id, int rank, bool follow,
                             const std::function<bool(const v1::LogChunk&)>& on_chunk) {
  auto context = StreamContext();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::OkStatus();
    streams_.push_back(context.get());
  }
  v1::StreamLogsRequest request;
  request.set_job_id(job_id);
  request.set_rank(rank);
  request.set_follow(follow);
  auto reader = stub_->StreamLogs(context.get(), request);
  v1::LogChunk chunk;
  bool stopped = false;
  while (reader->Read(&chunk)) {
    if (!on_chunk(chunk)) {
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

void JobClient::CancelStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (grpc::ClientContext* c : streams_) c->TryCancel();
}

}  // namespace colossal::cli
