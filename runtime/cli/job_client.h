// JobClient: the CLI's view of a coordinator's JobService — every unary call with a
// deadline and the bearer token; streams (WatchJob, StreamLogs) delivered to callbacks
// until they end, the callback returns false, or Cancel() is called from another thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/job.grpc.pb.h"
#include "runtime/rpc/rpc.h"

namespace colossal::cli {

struct ClientOptions {
  std::string coordinator = "127.0.0.1:29500";
  rpc::SecurityOptions security;
  std::chrono::milliseconds timeout{10000};  // unary calls
};

class JobClient {
 public:
  static absl::StatusOr<std::unique_ptr<JobClient>> Connect(const ClientOptions& options);

  absl::StatusOr<v1::SubmitJobResponse> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<std::vector<v1::Job>> List(bool active_only, int limit);
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::StatusOr<std::vector<v1::NodeInfo>> Nodes();

  // Streams events until the job is terminal (OK), the callback returns false (OK), or
  // the stream fails.
  absl::Status Watch(const std::string& job_id, const std::function<bool(const v1::JobEvent&)>& on_event);
  absl::Status Logs(const std::string& job_id, int rank, bool follow,
                    const std::function<bool(const v1::LogChunk&)>& on_chunk);

  // Ends the streams in progress (from another thread).
  void CancelStreams();

 private:
  JobClient() = default;
  // One unary call with the deadline and the token.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::JobService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
      const Request& request);
  // Reads the stream that `open` starts (with the token, no deadline) into `on_message`,
  // as Watch and Logs describe; CancelStreams reaches it.
  template <typename Open, typename Message>
  absl::Status ReadStream(Open open, const std::function<bool(const Message&)>& on_message);

  ClientOptions options_;
  std::string token_;
  std::unique_ptr<v1::JobService::Stub> stub_;
  std::mutex mu_;
  std::vector<grpc::ClientContext*> streams_;
  std::atomic<bool> cancelled_{false};
};

// "PENDING", "RUNNING", ... (the proto enum names).
std::string StateName(v1::JobState state);

}  // namespace colossal::cli
