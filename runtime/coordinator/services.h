// The gRPC services of the coordinator: JobService (job.proto) and NodeService,
// Rendezvous, WorkerService (coordinator.proto). Each handler checks the bearer token
// first (UNAUTHENTICATED otherwise), then forwards to the Scheduler; the streaming
// handlers (WatchJob, StreamLogs) and Rendezvous.Join poll for the client's
// cancellation and for shutdown. They own no state.
#pragma once

#include <atomic>

#include "proto/coordinator.grpc.pb.h"
#include "proto/job.grpc.pb.h"
#include "runtime/coordinator/event_hub.h"
#include "runtime/coordinator/log_store.h"
#include "runtime/coordinator/rendezvous.h"
#include "runtime/coordinator/scheduler.h"
#include "runtime/rpc/rpc.h"

namespace colossal::coordinator {

// What every service needs; the pointees outlive the services.
struct ServiceContext {
  Scheduler* scheduler = nullptr;
  LogStore* logs = nullptr;
  EventHub* events = nullptr;
  RendezvousTable* rendezvous = nullptr;
  const rpc::TokenAuth* auth = nullptr;
  const std::atomic<bool>* stopping = nullptr;  // set at Shutdown: streams end
};

class JobServiceImpl final : public v1::JobService::Service {
 public:
  explicit JobServiceImpl(ServiceContext c) : c_(c) {}
  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  // The current state first, then every later event; ends after a terminal state,
  // when the client cancels (CANCELLED) or at shutdown (UNAVAILABLE).
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  // What exists, attempt by attempt, rank by rank, in chunks of up to 64 KiB; with
  // `follow`, then new bytes as they arrive, until the job is terminal, every rank has
  // finished and two heartbeat intervals passed without new bytes.
  grpc::Status StreamLogs(grpc::ServerContext* ctx, const v1::StreamLogsRequest* request,
                          grpc::ServerWriter<v1::LogChunk>* writer) override;
  grpc::Status ListNodes(grpc::ServerContext* ctx, const v1::ListNodesRequest* request,
                         v1::ListNodesResponse* response) override;

 private:
  ServiceContext c_;
};

class NodeServiceImpl final : public v1::NodeService::Service {
 public:
  explicit NodeServiceImpl(ServiceContext c) : c_(c) {}
  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterNodeRequest* request,
                        v1::RegisterNodeResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;

 private:
  ServiceContext c_;
};

class RendezvousServiceImpl final : public v1::Rendezvous::Service {
 public:
  explicit RendezvousServiceImpl(ServiceContext c) : c_(c) {}
  grpc::Status Join(grpc::ServerContext* ctx, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override;

 private:
  ServiceContext c_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(ServiceContext c) : c_(c) {}
  grpc::Status ReportProgress(grpc::ServerContext* ctx, const v1::ProgressReport* request,
                              v1::ProgressAck* response) override;

 private:
  ServiceContext c_;
};

}  // namespace colossal::coordinator
