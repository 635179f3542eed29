// gRPC handlers: token check, then the Scheduler; streams poll for cancellation.
#include "runtime/coordinator/services.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/coordinator/time.h"

namespace colossal::coordinator {
namespace {

constexpr std::chrono::milliseconds kPoll(200);
constexpr int64_t kLogChunkBytes = 64 << 10;

#define COORD_AUTH(ctx)                                             \
  do {                                                              \
    if (grpc::Status s_ = c_.auth->Check(ctx); !s_.ok()) return s_; \
  } while (0)

grpc::Status Stopping() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the coordinator is shutting down");
}

// "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000" → "127.0.0.1" / "::1"; "" otherwise.
std::string PeerHost(const std::string& peer) {
  const size_t colon = peer.find(':');
  if (colon == std::string::npos) return "";
  absl::StatusOr<std::pair<std::string, int>> hp = rpc::SplitHostPort(peer.substr(colon + 1));
  return hp.ok() ? hp->first : "";
}

}  // namespace

// ---------------------------------------------------------------------------------
// JobService

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* ctx,
                                       const v1::SubmitJobRequest* request,
                                       v1::SubmitJobResponse* response) {
  COORD_AUTH(ctx);
  absl::StatusOr<v1::SubmitJobResponse> result = c_.scheduler->Submit(*request);
  if (!result.ok()) return rpc::ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* request,
                                    v1::Job* response) {
  COORD_AUTH(ctx);
  absl::StatusOr<v1::Job> job = c_.scheduler->GetJob(request->job_id());
  if (!job.ok()) return rpc::ToGrpc(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  COORD_AUTH(ctx);
  *response = c_.scheduler->ListJobs(*request);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* ctx,
                                       const v1::CancelJobRequest* request, v1::Job* response) {
  COORD_AUTH(ctx);
  absl::StatusOr<v1::Job> job = c_.scheduler->Cancel(request->job_id());
  if (!job.ok()) return rpc::ToGrpc(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListNodes(grpc::ServerContext* ctx, const v1::ListNodesRequest*,
                                       v1::ListNodesResponse* response) {
  COORD_AUTH(ctx);
  *response = c_.scheduler->ListNodes();
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  COORD_AUTH(ctx);
  v1::JobEvent current;
  absl::StatusOr<std::shared_ptr<Subscription>> subscription =
      c_.scheduler->Watch(request->job_id(), &current);
  if (!subscription.ok()) return rpc::ToGrpc(subscription.status());
  struct Unsubscribe {
    EventHub* hub;
    const std::string& job;
    const Subscription* sub;
    ~Unsubscribe() { hub->Unsubscribe(job, sub); }
  } unsubscribe{c_.events, request->job_id(), subscription->get()};

  if (!writer->Write(current) || IsTerminal(current.state())) return grpc::Status::OK;
  while (true) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the watcher left");
    std::optional<v1::JobEvent> event = (*subscription)->Next(kPoll);
    if (!event) {
      if ((*subscription)->closed()) return Stopping();
      continue;
    }
    if (!writer->Write(*event)) return grpc::Status::OK;  // the client is gone
    if (event->has_state() && IsTerminal(event->state())) return grpc::Status::OK;
  }
}

grpc::Status JobServiceImpl::StreamLogs(grpc::ServerContext* ctx,
                                        const v1::StreamLogsRequest* request,
                                        grpc::ServerWriter<v1::LogChunk>* writer) {
  COORD_AUTH(ctx);
  const std::string& job_id = request->job_id();
  absl::StatusOr<Scheduler::LogState> state = c_.scheduler->GetLogState(job_id);
  if (!state.ok()) return rpc::ToGrpc(state.status());
  if (request->rank() < -1) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("rank ", request->rank(), ": use a rank >= 0, or -1 for every rank"));
  }
  const int64_t quiet_ms = 2 * c_.scheduler->heartbeat_ms();
  std::map<std::pair<int, int>, int64_t> sent;  // (attempt, rank) → bytes streamed
  int64_t last_bytes_ms = SteadyMs();
  while (true) {
    const uint64_t generation = c_.logs->generation();
    for (const LogStore::File& file : c_.logs->List(job_id, request->rank())) {
      int64_t& offset = sent[{file.attempt, file.rank}];
      while (offset < file.size) {
        absl::StatusOr<std::string> data =
            c_.logs->Read(file.path, offset, std::min(kLogChunkBytes, file.size - offset));
        if (!data.ok()) return rpc::ToGrpc(data.status());
        if (data->empty()) break;
        v1::LogChunk chunk;
        chunk.set_job_id(job_id);
        chunk.set_rank(file.rank);
        chunk.set_attempt(file.attempt);
        chunk.set_offset(offset);
        offset += static_cast<int64_t>(data->size());
        chunk.set_data(*std::move(data));
        if (!writer->Write(chunk)) return grpc::Status::OK;  // the client is gone
        last_bytes_ms = SteadyMs();
      }
    }
    if (!request->follow()) return grpc::Status::OK;
    if (c_.stopping->load()) return Stopping();
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the reader left");
    state = c_.scheduler->GetLogState(job_id);
    if (!state.ok()) return rpc::ToGrpc(state.status());
    if (state->settled && SteadyMs() - std::max(state->settled_ms, last_bytes_ms) >= quiet_ms) {
      return grpc::Status::OK;
    }
    c_.logs->WaitForWrite(generation, kPoll);
  }
}

// ---------------------------------------------------------------------------------
// NodeService, Rendezvous, WorkerService

grpc::Status NodeServiceImpl::Register(grpc::ServerContext* ctx,
                                       const v1::RegisterNodeRequest* request,
                                       v1::RegisterNodeResponse* response) {
  COORD_AUTH(ctx);
  absl::StatusOr<v1::RegisterNodeResponse> result =
      c_.scheduler->Register(*request, PeerHost(ctx->peer()));
  if (!result.ok()) return rpc::ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status NodeServiceImpl::Heartbeat(grpc::ServerContext* ctx,
                                        const v1::HeartbeatRequest* request,
                                        v1::HeartbeatResponse* response) {
  COORD_AUTH(ctx);
  *response = c_.scheduler->Heartbeat(*request);
  return grpc::Status::OK;
}

grpc::Status RendezvousServiceImpl::Join(grpc::ServerContext* ctx, const v1::JoinRequest* request,
                                         v1::JoinResponse* response) {
  COORD_AUTH(ctx);
  if (absl::Status status = c_.scheduler->CheckJoin(*request); !status.ok()) {
    return rpc::ToGrpc(status);
  }
  absl::StatusOr<std::vector<std::string>> endpoints = c_.rendezvous->Join(
      request->job_id(), request->attempt(), request->rank(), request->world_size(),
      request->endpoint(), ctx->deadline(), [ctx] { return ctx->IsCancelled(); });
  if (!endpoints.ok()) return rpc::ToGrpc(endpoints.status());
  for (std::string& e : *endpoints) response->add_endpoints(std::move(e));
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportProgress(grpc::ServerContext* ctx,
                                               const v1::ProgressReport* request,
                                               v1::ProgressAck*) {
  COORD_AUTH(ctx);
  return rpc::ToGrpc(c_.scheduler->ReportProgress(*request));
}

}  // namespace colossal::coordinator
