// In-process tests of what involves nodes and processes: a lost node, a coordinator
// restarted on its state dir (jobs kept, workers re-attached, silent nodes lost), rank
// logs (idempotent chunks, StreamLogs with follow), vanished ranks and resent
// assignments, Rendezvous.Join, shutdown with open streams, and ListNodes.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <google/protobuf/util/message_differencer.h>

#include "runtime/coordinator/coordinator.h"
#include "runtime/coordinator/test_cluster.h"

namespace colossal::coordinator {
namespace {

using testing::Client;
using testing::FakeDaemon;
using testing::JobYaml;
using testing::TestOptions;
using testing::WaitFor;

v1::LogChunk Chunk(const std::string& job_id, int attempt, int rank, int64_t offset,
                   const std::string& data) {
  v1::LogChunk chunk;
  chunk.set_job_id(job_id);
  chunk.set_attempt(attempt);
  chunk.set_rank(rank);
  chunk.set_offset(offset);
  chunk.set_data(data);
  return chunk;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_CASE("a node that stops heartbeating is lost and its job restarts on another node") {
  CoordinatorOptions options = TestOptions("coord_lost_node");
  options.lease_ms = 1000;  // long enough for node-b's first heartbeat on a loaded machine
  auto coordinator = Coordinator::Start(options).value();
  Client client(coordinator->address());
  FakeDaemon a(&client, "node-a", 1);
  FakeDaemon b(&client, "node-b", 1, 8, "10.0.0.2");
  REQUIRE(a.Register().ok());
  REQUIRE(b.Register().ok());
  const std::string id = client.Submit(JobYaml("lost", 1, 1))->job_id();
  std::vector<v1::Assignment> first = a.AwaitStarts();
  REQUIRE(first.size() == 1);
  a.Run(first[0]);
  REQUIRE(a.Heartbeat().ok());
  REQUIRE(client.State(id) == v1::RUNNING);

  // node-a goes silent; node-b keeps heartbeating and gets attempt 2.
  std::vector<v1::Assignment> second = b.AwaitStarts(1, std::chrono::seconds(5));
  REQUIRE(second.size() == 1);
  CHECK(second[0].attempt() == 2);
  CHECK(second[0].master_addr() == "10.0.0.2");
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::SCHEDULED);
  CHECK(job.restarts() == 1);
  CHECK(job.ranks(0).node_id() == "node-b");

  v1::ListNodesResponse nodes;
  REQUIRE(client.jobs().ListNodes(client.Context().get(), {}, &nodes).ok());
  REQUIRE(nodes.nodes_size() == 2);
  CHECK(nodes.nodes(0).node_id() == "node-a");
  CHECK_FALSE(nodes.nodes(0).alive());
  CHECK(nodes.nodes(1).alive());
  CHECK(nodes.nodes(1).slots_used() == 1);

  // node-a comes back still running attempt 1: told to re-register, then to stop it.
  REQUIRE(a.Heartbeat().ok());
  CHECK(a.reregister);
  REQUIRE(a.Register().ok());
  std::vector<v1::StopAttempt> stops = a.AwaitStops();
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].job_id() == id);
  CHECK(stops[0].attempt() == 1);
}

TEST_CASE("a restarted coordinator keeps every job and re-attaches a node's workers") {
  CoordinatorOptions options = TestOptions("coord_restart");
  std::string done, running, queued;
  {
    auto coordinator = Coordinator::Start(options).value();
    Client client(coordinator->address());
    FakeDaemon node(&client, "node-a", 2);
    REQUIRE(node.Register().ok());
    done = client.Submit(JobYaml("done", 1, 1))->job_id();
    node.Run(node.AwaitStarts()[0]);
    node.Exit(done, 1, 0, 0);
    REQUIRE(node.Heartbeat().ok());
    REQUIRE(client.State(done) == v1::SUCCEEDED);

    running = client.Submit(JobYaml("running", 1, 2))->job_id();
    for (const v1::Assignment& a : node.AwaitStarts(2)) node.Run(a, 7000 + a.rank());
    REQUIRE(node.Heartbeat().ok());
    REQUIRE(client.Step(running, 1, 0, 7, 1.5).ok());
    queued = client.Submit(JobYaml("queued", 1, 1))->job_id();
    REQUIRE(client.State(queued) == v1::PENDING);
    coordinator->Shutdown();
    CHECK_FALSE(client.Get(done).ok());
    // Second Shutdown (and the destructor's) is harmless.
    coordinator->Shutdown();
  }

  // The node keeps its workers through the outage and comes back to a new coordinator.
  auto coordinator = Coordinator::Start(options).value();
  Client client(coordinator->address());
  CHECK(client.State(done) == v1::SUCCEEDED);
  v1::Job job = client.Get(running).value();
  CHECK(job.state() == v1::RUNNING);
  CHECK(job.attempt() == 1);
  CHECK(job.step() == 7);  // saved at shutdown although reported less than 1 s ago
  CHECK(job.loss() == 1.5);
  REQUIRE(job.ranks_size() == 2);
  CHECK(job.ranks(1).pid() == 7001);
  CHECK(job.ranks(1).state() == "running");
  CHECK(client.State(queued) == v1::PENDING);

  FakeDaemon node(&client, "node-a", 2);
  for (int r = 0; r < 2; ++r) {
    v1::RunningWorker w;
    w.set_job_id(running);
    w.set_attempt(1);
    w.set_rank(r);
    w.set_pid(7000 + r);
    node.running.push_back(w);
  }
  REQUIRE(node.Heartbeat().ok());
  CHECK(node.reregister);
  REQUIRE(node.Register().ok());
  for (int i = 0; i < 5; ++i) REQUIRE(node.Heartbeat().ok());
  CHECK(node.starts.empty());  // nothing restarted: the workers were re-attached
  CHECK(node.stops.empty());
  CHECK(client.State(running) == v1::RUNNING);

  node.Exit(running, 1, 0, 0);
  node.Exit(running, 1, 1, 0);
  std::vector<v1::Assignment> starts = node.AwaitStarts();
  CHECK(client.State(running) == v1::SUCCEEDED);
  REQUIRE(starts.size() == 1);
  CHECK(starts[0].job_id() == queued);
  CHECK(client.Submit(JobYaml("after", 1, 1))->job_id() == "j-000004");
}

TEST_CASE("after a coordinator restart, a node that does not come back within the lease is lost") {
  CoordinatorOptions options = TestOptions("coord_restart_lost");
  std::string id;
  {
    auto coordinator = Coordinator::Start(options).value();
    Client client(coordinator->address());
    FakeDaemon node(&client, "node-a", 1);
    REQUIRE(node.Register().ok());
    id = client.Submit(JobYaml("orphan", 1, 1, /*max_restarts=*/0))->job_id();
    node.Run(node.AwaitStarts()[0]);
    REQUIRE(node.Heartbeat().ok());
    REQUIRE(client.State(id) == v1::RUNNING);
  }
  options.lease_ms = 300;
  auto coordinator = Coordinator::Start(options).value();
  Client client(coordinator->address());
  REQUIRE(WaitFor([&] { return client.State(id) == v1::FAILED; }, std::chrono::seconds(5)));
  v1::Job job = client.Get(id).value();
  CHECK(job.message().rfind("node node-a was lost (no heartbeat for ", 0) == 0);
  CHECK(job.ranks(0).state() == "lost");
  CHECK(job.exit_code() == 0);  // no exit code: the node was lost
}

TEST_CASE("log chunks are stored once per offset and streamed, with follow until the end") {
  CoordinatorOptions options = TestOptions("coord_logs");
  auto coordinator = Coordinator::Start(options).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  FakeDaemon other(&client, "node-b", 1);
  REQUIRE(node.Register().ok());
  REQUIRE(other.Register().ok());
  const std::string id = client.Submit(JobYaml("logs", 1, 2))->job_id();
  for (const v1::Assignment& a : node.AwaitStarts(2)) node.Run(a);

  node.logs = {Chunk(id, 1, 0, 0, "hello "), Chunk(id, 1, 0, 6, "world\n"),
               Chunk(id, 1, 0, 0, "hello "), Chunk(id, 1, 1, 0, "r1\n")};
  REQUIRE(node.Heartbeat().ok());
  node.logs = {Chunk(id, 1, 0, 0, "hello "), Chunk(id, 1, 0, 6, "world\n")};  // resent
  REQUIRE(node.Heartbeat().ok());
  other.logs = {Chunk(id, 1, 0, 0, "impostor"), Chunk("j-000042", 1, 0, 0, "?")};
  REQUIRE(other.Heartbeat().ok());
  const std::string dir = options.state_dir + "/logs/" + id + "/attempt-1/";
  CHECK(ReadFile(dir + "rank-0.log") == "hello world\n");
  CHECK(ReadFile(dir + "rank-1.log") == "r1\n");
  CHECK_FALSE(std::filesystem::exists(options.state_dir + "/logs/j-000042"));

  auto read_all = [&](int rank, bool follow, std::map<int, std::string>* by_rank) {
    v1::StreamLogsRequest request;
    request.set_job_id(id);
    request.set_rank(rank);
    request.set_follow(follow);
    auto context = client.Context(std::chrono::seconds(20));
    auto reader = client.jobs().StreamLogs(context.get(), request);
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) {
      CHECK(chunk.job_id() == id);
      CHECK(chunk.attempt() == 1);
      std::string& text = (*by_rank)[chunk.rank()];
      CHECK(chunk.offset() == static_cast<int64_t>(text.size()));
      text += chunk.data();
    }
    return reader->Finish();
  };
  std::map<int, std::string> rank0;
  REQUIRE(read_all(0, false, &rank0).ok());
  CHECK(rank0 == std::map<int, std::string>{{0, "hello world\n"}});

  std::map<int, std::string> followed;
  std::atomic<bool> ended{false};
  grpc::Status follow_status;
  std::thread follower([&] {
    follow_status = read_all(-1, true, &followed);
    ended = true;
  });
  node.logs = {Chunk(id, 1, 0, 12, "more\n")};
  REQUIRE(node.Heartbeat().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK_FALSE(ended);  // the job runs: the follower waits for more
  node.logs = {Chunk(id, 1, 1, 3, "bye\n")};
  node.Exit(id, 1, 0, 0);
  node.Exit(id, 1, 1, 0);
  REQUIRE(node.Heartbeat().ok());
  REQUIRE(client.State(id) == v1::SUCCEEDED);
  CHECK(WaitFor([&] { return ended.load(); }, std::chrono::seconds(5)));
  follower.join();
  CHECK(follow_status.ok());
  CHECK(followed == std::map<int, std::string>{{0, "hello world\nmore\n"}, {1, "r1\nbye\n"}});
}

TEST_CASE("a rank that stops being reported is lost, unless its log is still shipping") {
  auto coordinator = Coordinator::Start(TestOptions("coord_vanish")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("vanish", 1, 2, /*max_restarts=*/0))->job_id();
  for (const v1::Assignment& a : node.AwaitStarts(2)) node.Run(a);
  REQUIRE(node.Heartbeat().ok());
  REQUIRE(client.State(id) == v1::RUNNING);

  // Rank 1 ended; its daemon ships a long log before it reports the exit.
  node.running.pop_back();
  for (int i = 0; i < 6; ++i) {
    node.logs = {Chunk(id, 1, 1, 100 * i, std::string(100, 'x'))};
    REQUIRE(node.Heartbeat().ok());
  }
  CHECK(client.Get(id)->ranks(1).state() == "running");
  node.Exit(id, 1, 1, 0);
  REQUIRE(node.Heartbeat().ok());
  CHECK(client.Get(id)->ranks(1).state() == "exited(0)");

  // Rank 0 disappears without a trace (its daemon lost it).
  node.running.clear();
  for (int i = 0; i < 2; ++i) REQUIRE(node.Heartbeat().ok());
  CHECK(client.State(id) == v1::RUNNING);
  REQUIRE(node.Heartbeat().ok());  // the third heartbeat without it
  v1::Job job = client.Get(id).value();
  CHECK(job.state() == v1::FAILED);
  CHECK(job.ranks(0).state() == "lost");
  CHECK(job.message() ==
        "rank 0 vanished from node node-a (its daemon stopped reporting it); no restarts left "
        "(train.max_restarts: 0)");
}

TEST_CASE("an assignment its daemon never mentions is delivered again after 10 heartbeats") {
  auto coordinator = Coordinator::Start(TestOptions("coord_resend")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 1);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("resend", 1, 1))->job_id();
  std::vector<v1::Assignment> first = node.AwaitStarts();
  REQUIRE(first.size() == 1);
  for (int i = 0; i < 9; ++i) REQUIRE(node.Heartbeat().ok());
  CHECK(node.starts.empty());
  REQUIRE(node.Heartbeat().ok());
  REQUIRE(node.starts.size() == 1);
  // (Equals, not serialized bytes: map fields serialize in no fixed order.)
  CHECK(google::protobuf::util::MessageDifferencer::Equals(node.starts[0], first[0]));
  CHECK(client.State(id) == v1::SCHEDULED);
}

TEST_CASE("Rendezvous.Join returns every rank's endpoint once all joined; deadlines and aborts") {
  auto coordinator = Coordinator::Start(TestOptions("coord_rendezvous")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 3);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("rdv", 1, 3))->job_id();

  auto join = [&](const std::string& job, int attempt, int rank, int world,
                  const std::string& endpoint, std::chrono::milliseconds timeout,
                  v1::JoinResponse* response) {
    v1::JoinRequest request;
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_rank(rank);
    request.set_world_size(world);
    request.set_endpoint(endpoint);
    return client.rendezvous().Join(client.Context(timeout).get(), request, response);
  };
  std::vector<v1::JoinResponse> responses(3);
  std::vector<grpc::Status> statuses(3);
  std::vector<std::thread> threads;
  for (int r = 2; r >= 0; --r) {
    threads.emplace_back([&, r] {
      statuses[r] =
          join(id, 1, r, 3, "ep-" + std::to_string(r), std::chrono::seconds(10), &responses[r]);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r << ": " << statuses[r].error_message());
    REQUIRE(statuses[r].ok());
    REQUIRE(responses[r].endpoints_size() == 3);
    CHECK(responses[r].endpoints(0) == "ep-0");
    CHECK(responses[r].endpoints(2) == "ep-2");
  }
  // Joining again replaces the blob.
  v1::JoinResponse again;
  REQUIRE(join(id, 1, 1, 3, "ep-1b", std::chrono::seconds(5), &again).ok());
  CHECK(again.endpoints(1) == "ep-1b");

  // Checks of the joiner.
  v1::JoinResponse unused;
  CHECK(join("j-000077", 1, 0, 3, "", std::chrono::seconds(5), &unused).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(join(id, 1, 0, 4, "", std::chrono::seconds(5), &unused).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(join(id, 1, 3, 3, "", std::chrono::seconds(5), &unused).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(join(id, 2, 0, 3, "", std::chrono::seconds(5), &unused).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);

  // A second job: rank 0 alone runs into its deadline.
  FakeDaemon second_node(&client, "node-b", 2);
  REQUIRE(second_node.Register().ok());
  const std::string lonely = client.Submit(JobYaml("lonely", 1, 2))->job_id();
  const auto begin = std::chrono::steady_clock::now();
  grpc::Status late = join(lonely, 1, 0, 2, "ep", std::chrono::milliseconds(300), &unused);
  CHECK(late.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(std::chrono::steady_clock::now() - begin < std::chrono::seconds(3));

  // A waiting join of an attempt that is superseded is ABORTED.
  for (const v1::Assignment& a : second_node.AwaitStarts(2)) second_node.Run(a);
  REQUIRE(second_node.Heartbeat().ok());
  grpc::Status waiting;
  std::thread waiter(
      [&] { waiting = join(lonely, 1, 0, 2, "ep", std::chrono::seconds(10), &unused); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  second_node.Exit(lonely, 1, 1, 1);
  REQUIRE(second_node.Heartbeat().ok());
  REQUIRE(client.State(lonely) == v1::RESTARTING);
  waiter.join();
  CHECK(waiting.error_code() == grpc::StatusCode::ABORTED);
  CHECK(join(lonely, 1, 1, 2, "ep", std::chrono::seconds(5), &unused).error_code() ==
        grpc::StatusCode::ABORTED);
}

TEST_CASE("Shutdown ends open streams and joins at once; one coordinator per state dir") {
  CoordinatorOptions options = TestOptions("coord_shutdown");
  auto coordinator = Coordinator::Start(options).value();
  absl::StatusOr<std::unique_ptr<Coordinator>> second = Coordinator::Start(options);
  CHECK(absl::IsFailedPrecondition(second.status()));
  CHECK(std::string(second.status().message()).find("is in use by another coordinator") !=
        std::string::npos);

  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 2);
  REQUIRE(node.Register().ok());
  const std::string id = client.Submit(JobYaml("open", 1, 2))->job_id();

  grpc::Status watch_status, logs_status, join_status;
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    v1::WatchJobRequest request;
    request.set_job_id(id);
    auto context = client.Context(std::chrono::seconds(30));
    auto reader = client.jobs().WatchJob(context.get(), request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
    }
    watch_status = reader->Finish();
  });
  threads.emplace_back([&] {
    v1::StreamLogsRequest request;
    request.set_job_id(id);
    request.set_rank(-1);
    request.set_follow(true);
    auto context = client.Context(std::chrono::seconds(30));
    auto reader = client.jobs().StreamLogs(context.get(), request);
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) {
    }
    logs_status = reader->Finish();
  });
  threads.emplace_back([&] {
    v1::JoinRequest request;
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_world_size(2);
    v1::JoinResponse response;
    join_status = client.rendezvous().Join(client.Context(std::chrono::seconds(30)).get(), request,
                                           &response);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto begin = std::chrono::steady_clock::now();
  coordinator->Shutdown();
  CHECK(std::chrono::steady_clock::now() - begin < std::chrono::milliseconds(1500));
  for (std::thread& t : threads) t.join();
  CHECK(watch_status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(logs_status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(join_status.error_code() == grpc::StatusCode::UNAVAILABLE);
  coordinator->Wait();  // returns: Shutdown has finished

  // The state dir is free again.
  CHECK(Coordinator::Start(options).ok());
}

TEST_CASE("ListNodes reports each node's slots, use, devices and liveness") {
  auto coordinator = Coordinator::Start(TestOptions("coord_nodes")).value();
  Client client(coordinator->address());
  FakeDaemon a(&client, "", 4, 16);  // the coordinator names it
  REQUIRE(a.Register().ok());
  CHECK(a.id() == "n-000001");
  client.Submit(JobYaml("use", 1, 3)).value();
  v1::ListNodesResponse nodes;
  REQUIRE(client.jobs().ListNodes(client.Context().get(), {}, &nodes).ok());
  REQUIRE(nodes.nodes_size() == 1);
  const v1::NodeInfo& n = nodes.nodes(0);
  CHECK(n.node_id() == "n-000001");
  CHECK(n.hostname() == "host-");
  CHECK(n.address() == "10.0.0.1");
  CHECK(n.slots() == 4);
  CHECK(n.slots_used() == 3);
  CHECK(n.cpu_cores() == 16);
  REQUIRE(n.devices_size() == 1);
  CHECK(n.devices(0) == "cpu:0");
  CHECK(n.alive());
  CHECK(n.last_seen_unix_ms() > 0);

  v1::RegisterNodeRequest bad;
  bad.set_node_id("has space");
  bad.set_slots(1);
  v1::RegisterNodeResponse unused;
  CHECK(client.nodes().Register(client.Context().get(), bad, &unused).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  bad.set_node_id("ok");
  bad.set_slots(0);
  CHECK(client.nodes().Register(client.Context().get(), bad, &unused).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace colossal::coordinator
