// Test helpers for in-process coordinator tests: a fresh state dir, client stubs of
// every service (with a bearer token), a fake node daemon that registers and
// heartbeats under the test's control, job YAML, and polling. Test-only.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.grpc.pb.h"
#include "runtime/coordinator/coordinator.h"

namespace colossal::coordinator::testing {

// TEST_TMPDIR/<name>, emptied.
std::string FreshDir(const std::string& name);

// Options for a coordinator on 127.0.0.1:0 with a fresh state dir and short timings
// (heartbeat 50 ms, lease 10 s, stop grace 1 s).
CoordinatorOptions TestOptions(const std::string& name);

// A small valid job: `nodes` x `ranks_per_node` ranks (parallel.data = their product),
// train.max_restarts, and env {COLOSSAL_TEST: "1", OMP_PROC_BIND: "close"}.
std::string JobYaml(const std::string& name, int nodes, int ranks_per_node, int max_restarts = 3);

// Polls `done` every 10 ms until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& done,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Stubs of the four services on one channel, each call with the token and a deadline.
class Client {
 public:
  explicit Client(const std::string& address, std::string token = "");

  std::unique_ptr<grpc::ClientContext> Context(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  absl::StatusOr<v1::SubmitJobResponse> Submit(const std::string& yaml,
                                               const std::vector<std::string>& overrides = {},
                                               bool validate_only = false);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  v1::JobState State(const std::string& job_id);  // JOB_STATE_UNSPECIFIED when Get fails
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::Status Step(const std::string& job_id, int attempt, int rank, int64_t step, double loss);
  absl::Status Val(const std::string& job_id, int attempt, int rank, int64_t step, double val_loss);

  v1::JobService::Stub& jobs() { return *jobs_; }
  v1::NodeService::Stub& nodes() { return *nodes_; }
  v1::Rendezvous::Stub& rendezvous() { return *rendezvous_; }
  v1::WorkerService::Stub& workers() { return *workers_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  absl::Status Report(const v1::ProgressReport& report);

  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
  std::unique_ptr<v1::Rendezvous::Stub> rendezvous_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

// A node daemon driven by the test: what it reports is what the test puts in
// `running`, `exits` and `logs`; Heartbeat() sends them and, like a real daemon,
// forgets the exits and logs once answered. Assignments and stops of every answer
// pile up in `starts` and `stops` until the test takes them.
class FakeDaemon {
 public:
  FakeDaemon(Client* client, std::string node_id, int slots, int cpu_cores = 8,
             std::string address = "10.0.0.1");

  absl::StatusOr<v1::RegisterNodeResponse> Register();
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat();

  // Starts the worker of `a` (it is reported running from the next heartbeat).
  void Run(const v1::Assignment& a, int64_t pid = 0);
  // Ends a running worker with an exit code (or a signal), reported until answered.
  void Exit(const std::string& job_id, int attempt, int rank, int exit_code, int signal = 0,
            const std::string& tail = "");
  // Heartbeats until `starts` holds at least `n` assignments (or `timeout`); takes them all.
  std::vector<v1::Assignment> AwaitStarts(
      size_t n = 1, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Heartbeats until `stops` is not empty (or `timeout`); takes them.
  std::vector<v1::StopAttempt> AwaitStops(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));

  const std::string& id() const { return id_; }
  std::vector<v1::RunningWorker> running;
  std::vector<v1::WorkerExit> exits;
  std::vector<v1::LogChunk> logs;
  std::vector<v1::Assignment> starts;
  std::vector<v1::StopAttempt> stops;
  bool reregister = false;  // the last answer asked for Register()

 private:
  Client* client_;
  std::string id_;
  int slots_;
  int cpu_cores_;
  std::string address_;
};

}  // namespace colossal::coordinator::testing
