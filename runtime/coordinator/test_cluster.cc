// Test helpers: state dirs, stubs, the fake daemon.
#include "runtime/coordinator/test_cluster.h"

#include <algorithm>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"
#include "runtime/rpc/rpc.h"

namespace colossal::coordinator::testing {

std::string FreshDir(const std::string& name) {
  const std::string dir = base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp") + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

CoordinatorOptions TestOptions(const std::string& name) {
  CoordinatorOptions options;
  options.listen = "127.0.0.1:0";
  options.state_dir = FreshDir(name);
  options.heartbeat_ms = 50;
  options.lease_ms = 10000;
  options.stop_grace_ms = 1000;
  return options;
}

std::string JobYaml(const std::string& name, int nodes, int ranks_per_node, int max_restarts) {
  const int world = nodes * ranks_per_node;
  return absl::StrCat("name: ", name, R"(
model: {type: gpt, n_layer: 2, n_head: 2, d_model: 64, seq_len: 32, vocab: 256}
data: {train: data/tiny.txt}
train:
  steps: 10
  global_batch: )",
                      4 * world, R"(
  max_restarts: )",
                      max_restarts, R"(
parallel: {data: )",
                      world, R"(}
resources: {nodes: )",
                      nodes, ", ranks_per_node: ", ranks_per_node, R"(}
env: {COLOSSAL_TEST: "1", OMP_PROC_BIND: close}
)");
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

Client::Client(const std::string& address, std::string token) : token_(std::move(token)) {
  channel_ = rpc::MakeChannel(address, {}).value();
  jobs_ = v1::JobService::NewStub(channel_);
  nodes_ = v1::NodeService::NewStub(channel_);
  rendezvous_ = v1::Rendezvous::NewStub(channel_);
  workers_ = v1::WorkerService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Client::Context(std::chrono::milliseconds timeout) const {
  return rpc::NewContext(timeout, token_);
}

absl::StatusOr<v1::SubmitJobResponse> Client::Submit(const std::string& yaml,
                                                     const std::vector<std::string>& overrides,
                                                     bool validate_only) {
  v1::SubmitJobRequest request;
  request.set_yaml(yaml);
  for (const std::string& o : overrides) request.add_overrides(o);
  request.set_validate_only(validate_only);
  request.set_base_dir("/work/base");
  request.set_source("job.yaml");
  v1::SubmitJobResponse response;
  grpc::Status status = jobs_->SubmitJob(Context().get(), request, &response);
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

absl::StatusOr<v1::Job> Client::Get(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = jobs_->GetJob(Context().get(), request, &job);
  if (!status.ok()) return rpc::FromGrpc(status);
  return job;
}

absl::StatusOr<v1::Job> Client::Cancel(const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = jobs_->CancelJob(Context().get(), request, &job);
  if (!status.ok()) return rpc::FromGrpc(status);
  return job;
}

v1::JobState Client::State(const std::string& job_id) {
  absl::StatusOr<v1::Job> job = Get(job_id);
  return job.ok() ? job->state() : v1::JOB_STATE_UNSPECIFIED;
}

absl::Status Client::Step(const std::string& job_id, int attempt, int rank, int64_t step,
                          double loss) {
  v1::ProgressReport report;
  report.set_job_id(job_id);
  report.set_attempt(attempt);
  report.set_rank(rank);
  report.mutable_step()->set_step(step);
  report.mutable_step()->set_total_steps(10);
  report.mutable_step()->set_loss(loss);
  return Report(report);
}

absl::Status Client::Val(const std::string& job_id, int attempt, int rank, int64_t step,
                         double val_loss) {
  v1::ProgressReport report;
  report.set_job_id(job_id);
  report.set_attempt(attempt);
  report.set_rank(rank);
  report.mutable_val()->set_step(step);
  report.mutable_val()->set_val_loss(val_loss);
  return Report(report);
}

absl::Status Client::Report(const v1::ProgressReport& report) {
  v1::ProgressAck ack;
  return rpc::FromGrpc(workers_->ReportProgress(Context().get(), report, &ack));
}

FakeDaemon::FakeDaemon(Client* client, std::string node_id, int slots, int cpu_cores,
                       std::string address)
    : client_(client),
      id_(std::move(node_id)),
      slots_(slots),
      cpu_cores_(cpu_cores),
      address_(std::move(address)) {}

absl::StatusOr<v1::RegisterNodeResponse> FakeDaemon::Register() {
  v1::RegisterNodeRequest request;
  request.set_node_id(id_);
  request.set_hostname("host-" + id_);
  request.set_address(address_);
  request.set_slots(slots_);
  request.set_cpu_cores(cpu_cores_);
  request.set_version("test");
  v1::Device* cpu = request.add_devices();
  cpu->set_kind("cpu");
  for (const v1::RunningWorker& w : running) *request.add_running() = w;
  v1::RegisterNodeResponse response;
  grpc::Status status = client_->nodes().Register(client_->Context().get(), request, &response);
  if (!status.ok()) return rpc::FromGrpc(status);
  id_ = response.node_id();
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> FakeDaemon::Heartbeat() {
  v1::HeartbeatRequest request;
  request.set_node_id(id_);
  for (const v1::RunningWorker& w : running) *request.add_running() = w;
  for (const v1::WorkerExit& e : exits) *request.add_exits() = e;
  for (const v1::LogChunk& c : logs) *request.add_logs() = c;
  v1::HeartbeatResponse response;
  grpc::Status status = client_->nodes().Heartbeat(client_->Context().get(), request, &response);
  if (!status.ok()) return rpc::FromGrpc(status);
  exits.clear();
  logs.clear();
  starts.insert(starts.end(), response.start().begin(), response.start().end());
  stops.insert(stops.end(), response.stop().begin(), response.stop().end());
  reregister = response.reregister();
  return response;
}

void FakeDaemon::Run(const v1::Assignment& a, int64_t pid) {
  v1::RunningWorker w;
  w.set_job_id(a.job_id());
  w.set_attempt(a.attempt());
  w.set_rank(a.rank());
  w.set_pid(pid != 0 ? pid : 1000 + a.rank());
  running.push_back(w);
}

void FakeDaemon::Exit(const std::string& job_id, int attempt, int rank, int exit_code, int signal,
                      const std::string& tail) {
  running.erase(std::remove_if(running.begin(), running.end(),
                               [&](const v1::RunningWorker& w) {
                                 return w.job_id() == job_id && w.attempt() == attempt &&
                                        w.rank() == rank;
                               }),
                running.end());
  v1::WorkerExit e;
  e.set_job_id(job_id);
  e.set_attempt(attempt);
  e.set_rank(rank);
  e.set_exit_code(exit_code);
  e.set_signal(signal);
  e.set_tail(tail);
  exits.push_back(e);
}

std::vector<v1::Assignment> FakeDaemon::AwaitStarts(size_t n, std::chrono::milliseconds timeout) {
  WaitFor([&] { return (Heartbeat().ok() && starts.size() >= n); }, timeout);
  return std::exchange(starts, {});
}

std::vector<v1::StopAttempt> FakeDaemon::AwaitStops(std::chrono::milliseconds timeout) {
  WaitFor([&] { return (Heartbeat().ok() && !stops.empty()); }, timeout);
  return std::exchange(stops, {});
}

}  // namespace colossal::coordinator::testing
