// In-process tests of the job state machine through the gRPC API: a whole job watched
// from submit to SUCCEEDED, restarts after a failed rank, exit code 2, exhausted
// restarts, cancel, jobs that can never fit, and the FIFO queue. The test plays the
// node daemon (FakeDaemon) and the workers (ReportProgress).
#include <catch2/catch.hpp>
#include <thread>

#include "runtime/coordinator/coordinator.h"
#include "runtime/coordinator/test_cluster.h"

namespace colossal::coordinator {
namespace {

using testing::Client;
using testing::FakeDaemon;
using testing::JobYaml;
using testing::TestOptions;
using testing::WaitFor;

// Reads a WatchJob stream to its end on a thread of its own.
class Watcher {
 public:
  Watcher(Client& client, const std::string& job_id)
      : context_(client.Context(std::chrono::seconds(30))) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    reader_ = client.jobs().WatchJob(context_.get(), request);
    thread_ = std::thread([this] {
      v1::JobEvent event;
      while (reader_->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(event);
      }
      status_ = reader_->Finish();
      done_ = true;
    });
  }
  ~Watcher() {
    context_->TryCancel();
    thread_.join();
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  bool done() const { return done_; }
  std::vector<v1::JobEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  grpc::Status status() const { return status_; }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<v1::JobEvent> events_;
  grpc::Status status_;
  std::atomic<bool> done_{false};
};

TEST_CASE("a job runs from submit to SUCCEEDED; its watcher sees states and metrics in order") {
  auto coordinator = Coordinator::Start(TestOptions("coord_lifecycle")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2, /*cpu_cores=*/8, "10.0.0.1");
  absl::StatusOr<v1::RegisterNodeResponse> reg = node.Register();
  REQUIRE(reg.ok());
  CHECK(reg->node_id() == "node-a");
  CHECK(reg->heartbeat_ms() == 50);
  CHECK(reg->lease_ms() == 10000);

  absl::StatusOr<v1::SubmitJobResponse> submit = client.Submit(JobYaml("lifecycle", 1, 2));
  REQUIRE(submit.ok());
  const std::string id = submit->job_id();
  CHECK(id == "j-000001");
  CHECK(submit->spec_yaml().find("train: \"/work/base/data/tiny.txt\"") != std::string::npos);
  CHECK(submit->job().spec_yaml() == submit->spec_yaml());
  CHECK(submit->job().state() == v1::SCHEDULED);  // a node was there: placed at once
  CHECK(submit->job().world_size() == 2);
  CHECK(submit->job().run_dir() == "/work/base/runs/lifecycle");

  Watcher watcher(client, id);
  REQUIRE(WaitFor([&] { return watcher.count() >= 1; }));

  std::vector<v1::Assignment> starts = node.AwaitStarts(2);
  REQUIRE(starts.size() == 2);
  for (int r = 0; r < 2; ++r) {
    const v1::Assignment& a = starts[r];
    CHECK(a.job_id() == id);
    CHECK(a.attempt() == 1);
    CHECK(a.rank() == r);
    CHECK(a.local_rank() == r);
    CHECK(a.world_size() == 2);
    CHECK(a.local_world_size() == 2);
    CHECK(a.spec_yaml() == submit->spec_yaml());
    CHECK(a.master_addr() == "10.0.0.1");
    CHECK(a.master_port() == 30000);  // job 1, attempt 1: the base of the documented range
    CHECK(a.threads() == 4);          // 8 cores / 2 ranks
    CHECK(a.env().size() == 2);
    CHECK(a.env().at("COLOSSAL_TEST") == "1");
    CHECK(a.env().at("OMP_PROC_BIND") == "close");
  }
  node.Run(starts[0], 4242);
  node.Run(starts[1], 4243);
  REQUIRE(node.Heartbeat().ok());
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::RUNNING);
  CHECK(job.started_unix_ms() > 0);
  REQUIRE(job.ranks_size() == 2);
  CHECK(job.ranks(0).node_id() == "node-a");
  CHECK(job.ranks(0).pid() == 4242);
  CHECK(job.ranks(0).state() == "running");
  CHECK(job.ranks(1).local_rank() == 1);

  REQUIRE(client.Step(id, 1, 0, 1, 2.5).ok());
  REQUIRE(client.Step(id, 1, 0, 2, 2.25).ok());
  REQUIRE(client.Step(id, 1, 1, 2, 9.0).ok());  // rank 1: accepted, not the job's figures
  REQUIRE(client.Val(id, 1, 0, 2, 2.4).ok());
  job = client.Get(id).value();
  CHECK(job.step() == 2);
  CHECK(job.total_steps() == 10);
  CHECK(job.loss() == 2.25);
  CHECK(job.val_loss() == 2.4);

  node.Exit(id, 1, 0, 0);
  node.Exit(id, 1, 1, 0);
  REQUIRE(node.Heartbeat().ok());
  job = client.Get(id).value();
  CHECK(job.state() == v1::SUCCEEDED);
  CHECK(job.exit_code() == 0);
  CHECK(job.message() == "all 2 ranks exited with code 0");
  CHECK(job.finished_unix_ms() >= job.started_unix_ms());
  CHECK(job.ranks(0).state() == "exited(0)");
  CHECK(job.restarts() == 0);

  REQUIRE(WaitFor([&] { return watcher.done(); }));
  CHECK(watcher.status().ok());
  std::vector<v1::JobEvent> events = watcher.events();
  REQUIRE(events.size() == 6);
  CHECK(events[0].state() == v1::SCHEDULED);
  CHECK(events[1].state() == v1::RUNNING);
  CHECK(events[2].step().step() == 1);
  CHECK(events[2].step().loss() == 2.5);
  CHECK(events[3].step().step() == 2);
  CHECK(events[4].val().val_loss() == 2.4);
  CHECK(events[5].state() == v1::SUCCEEDED);
  for (const v1::JobEvent& e : events) {
    CHECK(e.job_id() == id);
    CHECK(e.attempt() == 1);
  }

  // A watcher of a finished job gets the terminal state and the end of the stream.
  Watcher late(client, id);
  REQUIRE(WaitFor([&] { return late.done(); }));
  REQUIRE(late.events().size() == 1);
  CHECK(late.events()[0].state() == v1::SUCCEEDED);
}

TEST_CASE("a failed rank restarts the job: StopAttempt, then attempt 2 once every rank exited") {
  auto coordinator = Coordinator::Start(TestOptions("coord_restart_policy")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("restart", 1, 2, /*max_restarts=*/3))->job_id();
  for (const v1::Assignment& a : node.AwaitStarts(2)) node.Run(a);
  REQUIRE(node.Heartbeat().ok());
  REQUIRE(client.State(id) == v1::RUNNING);

  node.Exit(id, 1, 1, /*exit_code=*/1, 0, "Traceback: boom");
  std::vector<v1::StopAttempt> stops = node.AwaitStops();
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].job_id() == id);
  CHECK(stops[0].attempt() == 1);
  CHECK(stops[0].grace_ms() == 1000);
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::RESTARTING);
  CHECK(job.message() == "rank 1 on node node-a exited with code 1; restart 1 of 3");
  CHECK(job.ranks(1).state() == "exited(1)");

  // Rank 0 still runs: no new attempt yet.
  REQUIRE(node.Heartbeat().ok());
  CHECK(node.starts.empty());
  CHECK(client.State(id) == v1::RESTARTING);

  node.Exit(id, 1, 0, 0, /*signal=*/15);
  std::vector<v1::Assignment> starts = node.AwaitStarts(2);
  REQUIRE(starts.size() == 2);
  CHECK(starts[0].attempt() == 2);
  CHECK(starts[0].master_port() == 30001);
  job = client.Get(id).value();
  CHECK(job.state() == v1::SCHEDULED);
  CHECK(job.attempt() == 2);
  CHECK(job.restarts() == 1);
  CHECK(job.ranks(0).state() == "assigned");

  // Reports of the old attempt no longer count.
  REQUIRE(client.Step(id, 1, 0, 5, 9.0).ok());
  CHECK(client.Get(id)->step() == 0);

  for (const v1::Assignment& a : starts) node.Run(a);
  REQUIRE(node.Heartbeat().ok());
  CHECK(client.State(id) == v1::RUNNING);
  node.Exit(id, 2, 0, 0);
  node.Exit(id, 2, 1, 0);
  REQUIRE(node.Heartbeat().ok());
  job = client.Get(id).value();
  CHECK(job.state() == v1::SUCCEEDED);
  CHECK(job.attempt() == 2);
  CHECK(job.restarts() == 1);
}

TEST_CASE("exit code 2 (or 126/127) fails the job without a restart, quoting the rank's log tail") {
  auto coordinator = Coordinator::Start(TestOptions("coord_bad_input")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 1);
  REQUIRE(node.Register().ok());

  SECTION("the tail the daemon sent with the exit") {
    const std::string id = client.Submit(JobYaml("bad", 1, 1))->job_id();
    node.Run(node.AwaitStarts()[0]);
    REQUIRE(node.Heartbeat().ok());
    node.Exit(id, 1, 0, 2, 0, "job.yaml:3:7: model.n_layer: must be >= 1");
    REQUIRE(node.Heartbeat().ok());
    v1::Job job = client.Get(id).value();
    CHECK(job.state() == v1::FAILED);
    CHECK(job.restarts() == 0);
    CHECK(job.exit_code() == 2);
    CHECK(job.message() ==
          "rank 0 on node node-a exited with code 2 (bad input: not restarted); last log lines:\n"
          "job.yaml:3:7: model.n_layer: must be >= 1");
    REQUIRE(node.Heartbeat().ok());
    CHECK(node.starts.empty());
  }
  SECTION("exit 127 (the daemon could not start the worker) is not restarted either") {
    const std::string id = client.Submit(JobYaml("nostart", 1, 1))->job_id();
    node.AwaitStarts();
    node.Exit(id, 1, 0, 127, 0, "colossald: cannot start worker: /opt/x/colossal-worker: No such file");
    REQUIRE(node.Heartbeat().ok());
    v1::Job job = client.Get(id).value();
    CHECK(job.state() == v1::FAILED);
    CHECK(job.restarts() == 0);
    CHECK(job.exit_code() == 127);
    CHECK(job.message() ==
          "rank 0 on node node-a exited with code 127 (the worker could not be started: not "
          "restarted); last log lines:\ncolossald: cannot start worker: /opt/x/colossal-worker: "
          "No such file");
    REQUIRE(node.Heartbeat().ok());
    CHECK(node.starts.empty());
  }
  SECTION("the tail of the stored log when the exit carries none") {
    const std::string id = client.Submit(JobYaml("bad", 1, 1))->job_id();
    node.Run(node.AwaitStarts()[0]);
    v1::LogChunk chunk;
    chunk.set_job_id(id);
    chunk.set_attempt(1);
    chunk.set_rank(0);
    chunk.set_data("loading\nerror: data.train: no such file\n");
    node.logs.push_back(chunk);
    node.Exit(id, 1, 0, 2);
    REQUIRE(node.Heartbeat().ok());
    v1::Job job = client.Get(id).value();
    CHECK(job.state() == v1::FAILED);
    CHECK(job.message().find("last log lines:\nloading\nerror: data.train: no such file\n") !=
          std::string::npos);
  }
}

TEST_CASE("a job whose restarts are used up fails") {
  auto coordinator = Coordinator::Start(TestOptions("coord_exhausted")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 1);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("exhausted", 1, 1, /*max_restarts=*/1))->job_id();
  node.Run(node.AwaitStarts()[0]);
  node.Exit(id, 1, 0, 1);
  std::vector<v1::Assignment> second = node.AwaitStarts();  // the only rank exited: at once
  REQUIRE(second.size() == 1);
  CHECK(second[0].attempt() == 2);
  node.Run(second[0]);
  REQUIRE(node.Heartbeat().ok());
  node.Exit(id, 2, 0, 0, /*signal=*/9, "killed");
  REQUIRE(node.Heartbeat().ok());
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::FAILED);
  CHECK(job.attempt() == 2);
  CHECK(job.restarts() == 1);
  CHECK(job.exit_code() == 128 + 9);
  CHECK(job.message() ==
        "rank 0 on node node-a was killed by signal 9 (Killed); no restarts left "
        "(train.max_restarts: 1); last log lines:\nkilled");
  REQUIRE(node.Heartbeat().ok());
  CHECK(node.starts.empty());
}

TEST_CASE("cancel stops a job's ranks; finished and unknown jobs are refused") {
  auto coordinator = Coordinator::Start(TestOptions("coord_cancel")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("cancel", 1, 2))->job_id();
  for (const v1::Assignment& a : node.AwaitStarts(2)) node.Run(a);
  REQUIRE(node.Heartbeat().ok());

  absl::StatusOr<v1::Job> cancelled = client.Cancel(id);
  REQUIRE(cancelled.ok());
  CHECK(cancelled->state() == v1::CANCELLED);
  CHECK(cancelled->finished_unix_ms() > 0);
  std::vector<v1::StopAttempt> stops = node.AwaitStops();
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].job_id() == id);
  CHECK(stops[0].attempt() == 1);
  CHECK(stops[0].grace_ms() == 1000);
  node.Exit(id, 1, 0, 0, 15);
  node.Exit(id, 1, 1, 0, 9);
  REQUIRE(node.Heartbeat().ok());
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::CANCELLED);
  CHECK(job.ranks(0).state() == "killed(15)");
  CHECK(job.ranks(1).state() == "killed(9)");

  absl::StatusOr<v1::Job> again = client.Cancel(id);
  CHECK(absl::IsFailedPrecondition(again.status()));
  CHECK(std::string(again.status().message()) ==
        "job j-000001 is already CANCELLED; only PENDING, SCHEDULED, RUNNING or RESTARTING jobs "
        "can be cancelled");
  CHECK(absl::IsNotFound(client.Cancel("j-999999").status()));
  CHECK(absl::IsNotFound(client.Get("j-999999").status()));
  CHECK(absl::IsNotFound(client.Get("../../etc").status()));

  v1::WatchJobRequest watch;
  watch.set_job_id("j-424242");
  auto context = client.Context();
  v1::JobEvent event;
  auto reader = client.jobs().WatchJob(context.get(), watch);
  CHECK_FALSE(reader->Read(&event));
  CHECK(reader->Finish().error_code() == grpc::StatusCode::NOT_FOUND);
  v1::StreamLogsRequest logs;
  logs.set_job_id("j-424242");
  logs.set_rank(-1);
  auto context2 = client.Context();
  v1::LogChunk chunk;
  auto log_reader = client.jobs().StreamLogs(context2.get(), logs);
  CHECK_FALSE(log_reader->Read(&chunk));
  CHECK(log_reader->Finish().error_code() == grpc::StatusCode::NOT_FOUND);

  // A queued job is cancelled at once: nothing was started.
  const std::string big = client.Submit(JobYaml("big", 1, 2))->job_id();
  const std::string queued = client.Submit(JobYaml("queued", 1, 2))->job_id();
  CHECK(client.State(queued) == v1::PENDING);
  CHECK(client.Cancel(queued)->state() == v1::CANCELLED);
  CHECK(client.State(big) == v1::SCHEDULED);
}

TEST_CASE("a job that can never fit is RESOURCE_EXHAUSTED; without nodes it queues") {
  auto coordinator = Coordinator::Start(TestOptions("coord_fit")).value();
  Client client(coordinator->address());
  absl::StatusOr<v1::SubmitJobResponse> early = client.Submit(JobYaml("early", 2, 1));
  REQUIRE(early.ok());
  CHECK(early->job().state() == v1::PENDING);
  CHECK(early->job().message() == "waiting for a node daemon to register");

  FakeDaemon a(&client, "node-a", 2);
  REQUIRE(a.Register().ok());
  CHECK(client.State(early->job_id()) == v1::PENDING);  // needs a second node

  absl::StatusOr<v1::SubmitJobResponse> two_nodes = client.Submit(JobYaml("two", 2, 1));
  CHECK(absl::IsResourceExhausted(two_nodes.status()));
  CHECK(std::string(two_nodes.status().message()) ==
        "the job can never fit the registered nodes: it needs 2 x 1 ranks (resources.nodes x "
        "resources.ranks_per_node), and resources.nodes is 2 but 1 daemon is registered (slots "
        "per node: node-a: 2)");
  absl::StatusOr<v1::SubmitJobResponse> wide = client.Submit(JobYaml("wide", 1, 4));
  CHECK(absl::IsResourceExhausted(wide.status()));
  CHECK(std::string(wide.status().message())
            .find("resources.ranks_per_node is 4 but the largest node has 2 slots") !=
        std::string::npos);
  CHECK(absl::IsResourceExhausted(
      client.Submit(JobYaml("wide", 1, 4), {}, /*validate_only=*/true).status()));

  FakeDaemon b(&client, "node-b", 1);
  REQUIRE(b.Register().ok());
  v1::Job job = client.Get(early->job_id()).value();
  CHECK(job.state() == v1::SCHEDULED);
  REQUIRE(job.ranks_size() == 2);
  CHECK(job.ranks(0).node_id() == "node-a");
  CHECK(job.ranks(1).node_id() == "node-b");
  CHECK(job.ranks(1).local_rank() == 0);
  // 2 x 2 fits neither now: node-b has 1 slot.
  CHECK(absl::IsResourceExhausted(client.Submit(JobYaml("square", 2, 2)).status()));
}

TEST_CASE("jobs queue in FIFO order while slots are short") {
  auto coordinator = Coordinator::Start(TestOptions("coord_queue")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  REQUIRE(node.Register().ok());
  const std::string first = client.Submit(JobYaml("first", 1, 1))->job_id();
  const std::string second = client.Submit(JobYaml("second", 1, 2))->job_id();
  const std::string third = client.Submit(JobYaml("third", 1, 1))->job_id();
  CHECK(client.State(first) == v1::SCHEDULED);
  v1::Job waiting = client.Get(second).value();
  CHECK(waiting.state() == v1::PENDING);
  CHECK(waiting.message() ==
        "waiting for capacity: needs 1 node with 2 free slots; 0 of 1 live node has them");
  CHECK(client.State(third) == v1::PENDING);  // one slot is free, but second came first

  node.Run(node.AwaitStarts()[0]);
  node.Exit(first, 1, 0, 0);
  std::vector<v1::Assignment> starts = node.AwaitStarts(2);
  REQUIRE(starts.size() == 2);
  CHECK(starts[0].job_id() == second);
  CHECK(client.State(first) == v1::SUCCEEDED);
  CHECK(client.State(second) == v1::SCHEDULED);
  CHECK(client.State(third) == v1::PENDING);

  for (const v1::Assignment& a : starts) node.Run(a);
  REQUIRE(node.Heartbeat().ok());
  node.Exit(second, 1, 0, 0);
  node.Exit(second, 1, 1, 0);
  starts = node.AwaitStarts();
  REQUIRE(starts.size() == 1);
  CHECK(starts[0].job_id() == third);
  CHECK(starts[0].master_port() == 30032);  // job 3, attempt 1: 30000 + 2 * 16

  v1::ListJobsRequest list;
  list.set_limit(2);
  v1::ListJobsResponse listed;
  REQUIRE(client.jobs().ListJobs(client.Context().get(), list, &listed).ok());
  REQUIRE(listed.jobs_size() == 2);
  CHECK(listed.jobs(0).id() == third);
  CHECK(listed.jobs(1).id() == second);
  list.set_limit(0);
  list.set_active_only(true);
  REQUIRE(client.jobs().ListJobs(client.Context().get(), list, &listed).ok());
  REQUIRE(listed.jobs_size() == 1);
  CHECK(listed.jobs(0).id() == third);
}

}  // namespace
}  // namespace colossal::coordinator
