// In-process tests of the API surface: bearer tokens on every service, bad YAML,
// 500 concurrent validate_only submits, 20 concurrent real jobs, and the standard
// health and reflection services (spoken as raw protobuf bytes through GenericStub, so
// the test needs no generated code for them).
#include <grpcpp/generic/generic_stub.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "runtime/coordinator/coordinator.h"
#include "runtime/coordinator/test_cluster.h"

namespace colossal::coordinator {
namespace {

using testing::Client;
using testing::FakeDaemon;
using testing::JobYaml;
using testing::TestOptions;

grpc::ByteBuffer Bytes(const std::string& data) {
  grpc::Slice slice(data);
  return grpc::ByteBuffer(&slice, 1);
}

std::string String(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// One unary call of `method` with a serialized request; the serialized response.
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                      const std::string& request, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareUnaryCall(&context, method, Bytes(request), &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  REQUIRE(cq.Next(&tag, &ok));
  *response = String(reply);
  return status;
}

// A health.v1 HealthCheckRequest {service}: field 1, length-delimited.
std::string HealthRequest(const std::string& service) {
  return std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
}
const std::string kServing("\x08\x01", 2);  // HealthCheckResponse {status: SERVING}

TEST_CASE("every service wants the bearer token; health does not") {
  CoordinatorOptions options = TestOptions("coord_auth");
  const std::string token_file = options.state_dir + "/../coord_auth.token";
  std::ofstream(token_file) << "s3cret\n";
  options.security.token_file = token_file;
  auto coordinator = Coordinator::Start(options).value();

  for (const std::string& token : {std::string(), std::string("wrong")}) {
    INFO("token '" << token << "'");
    Client client(coordinator->address(), token);
    CHECK(absl::IsUnauthenticated(client.Submit(JobYaml("a", 1, 1)).status()));
    CHECK(absl::IsUnauthenticated(client.Get("j-000001").status()));
    CHECK(absl::IsUnauthenticated(client.Step("j-000001", 1, 0, 1, 1.0)));
    FakeDaemon node(&client, "node-a", 1);
    CHECK(absl::IsUnauthenticated(node.Register().status()));
    CHECK(absl::IsUnauthenticated(node.Heartbeat().status()));
    v1::JoinRequest join;
    v1::JoinResponse joined;
    CHECK(client.rendezvous().Join(client.Context().get(), join, &joined).error_code() ==
          grpc::StatusCode::UNAUTHENTICATED);
    v1::ListNodesResponse nodes;
    CHECK(client.jobs().ListNodes(client.Context().get(), {}, &nodes).error_code() ==
          grpc::StatusCode::UNAUTHENTICATED);
    v1::WatchJobRequest watch;
    watch.set_job_id("j-000001");
    auto context = client.Context();
    auto reader = client.jobs().WatchJob(context.get(), watch);
    v1::JobEvent event;
    CHECK_FALSE(reader->Read(&event));
    CHECK(reader->Finish().error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }

  Client client(coordinator->address(), "s3cret");
  FakeDaemon node(&client, "node-a", 1);
  REQUIRE(node.Register().ok());
  absl::StatusOr<v1::SubmitJobResponse> submit = client.Submit(JobYaml("a", 1, 1));
  REQUIRE(submit.ok());
  CHECK(client.Get(submit->job_id()).ok());
  CHECK(node.Heartbeat().ok());

  std::string health;
  Client anonymous(coordinator->address());
  CHECK(RawUnary(anonymous.channel(), "/grpc.health.v1.Health/Check", HealthRequest(""), &health)
            .ok());
  CHECK(health == kServing);
}

TEST_CASE("health reports each service SERVING; reflection lists them") {
  auto coordinator = Coordinator::Start(TestOptions("coord_health")).value();
  Client client(coordinator->address());
  for (const char* service : {"colossal.v1.JobService", "colossal.v1.NodeService",
                              "colossal.v1.Rendezvous", "colossal.v1.WorkerService"}) {
    std::string response;
    INFO(service);
    REQUIRE(RawUnary(client.channel(), "/grpc.health.v1.Health/Check", HealthRequest(service),
                     &response)
                .ok());
    CHECK(response == kServing);
  }
  std::string response;
  CHECK(RawUnary(client.channel(), "/grpc.health.v1.Health/Check", HealthRequest("nope"), &response)
            .error_code() == grpc::StatusCode::NOT_FOUND);

  // ServerReflectionInfo with one request {list_services: ""} (field 7).
  grpc::GenericStub stub(client.channel());
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  REQUIRE((cq.Next(&tag, &ok) && ok));
  call->Write(Bytes(std::string("\x3a\x00", 2)), reinterpret_cast<void*>(2));
  REQUIRE((cq.Next(&tag, &ok) && ok));
  grpc::ByteBuffer reply;
  call->Read(&reply, reinterpret_cast<void*>(3));
  REQUIRE((cq.Next(&tag, &ok) && ok));
  const std::string listed = String(reply);
  CHECK(listed.find("colossal.v1.JobService") != std::string::npos);
  CHECK(listed.find("colossal.v1.Rendezvous") != std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  REQUIRE(cq.Next(&tag, &ok));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  REQUIRE(cq.Next(&tag, &ok));
  CHECK(status.ok());
}

TEST_CASE("bad YAML is INVALID_ARGUMENT with the parser's located message") {
  auto coordinator = Coordinator::Start(TestOptions("coord_bad_yaml")).value();
  Client client(coordinator->address());
  for (bool validate_only : {false, true}) {
    absl::StatusOr<v1::SubmitJobResponse> r =
        client.Submit("name: [a, b\nmodel: x\n", {}, validate_only);
    CHECK(absl::IsInvalidArgument(r.status()));
    CHECK(std::string(r.status().message()) ==
          "job.yaml:2:6: invalid YAML: end of sequence flow not found");
  }
  std::string yaml = JobYaml("typo", 1, 1);
  yaml.replace(yaml.find("steps:"), 6, "stepz:");
  absl::StatusOr<v1::SubmitJobResponse> typo = client.Submit(yaml);
  CHECK(absl::IsInvalidArgument(typo.status()));
  CHECK(std::string(typo.status().message()) ==
        "job.yaml:5:3: train.stepz: unknown key 'stepz'; did you mean 'steps'?");
  absl::StatusOr<v1::SubmitJobResponse> over = client.Submit(JobYaml("o", 1, 1), {"train.stepz=3"});
  CHECK(absl::IsInvalidArgument(over.status()));
  CHECK(std::string(over.status().message()).find("--set 'train.stepz=3'") != std::string::npos);
  // Overrides apply: the canonical spec carries them.
  absl::StatusOr<v1::SubmitJobResponse> ok =
      client.Submit(JobYaml("o", 1, 1), {"train.steps=77"}, true);
  REQUIRE(ok.ok());
  CHECK(ok->spec_yaml().find("steps: 77") != std::string::npos);
  CHECK(ok->job_id().empty());
}

TEST_CASE("500 concurrent validate_only submits are all answered and store nothing") {
  auto coordinator = Coordinator::Start(TestOptions("coord_validate_500")).value();
  Client client(coordinator->address());
  constexpr int kSubmits = 500;
  std::vector<absl::StatusOr<v1::SubmitJobResponse>> results(kSubmits,
                                                             absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  const auto begin = std::chrono::steady_clock::now();
  for (int i = 0; i < kSubmits; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = client.Submit(JobYaml("v", 1, 1), {}, /*validate_only=*/true); });
  }
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  WARN("500 concurrent validate_only submits answered in " << seconds << " s");
  for (int i = 0; i < kSubmits; ++i) {
    INFO("submit " << i << ": " << results[i].status().message());
    REQUIRE(results[i].ok());
    CHECK(results[i]->spec_yaml() == results[0]->spec_yaml());
    CHECK(results[i]->job_id().empty());
  }
  v1::ListJobsResponse listed;
  REQUIRE(client.jobs().ListJobs(client.Context().get(), {}, &listed).ok());
  CHECK(listed.jobs_size() == 0);
}

TEST_CASE("20 concurrent real jobs are each stored, placed, run and finished once") {
  auto coordinator = Coordinator::Start(TestOptions("coord_jobs_20")).value();
  Client client(coordinator->address());
  FakeDaemon node(&client, "node-a", 20, 20);
  REQUIRE(node.Register().ok());
  constexpr int kJobs = 20;
  std::vector<absl::StatusOr<v1::SubmitJobResponse>> results(kJobs, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  const auto begin = std::chrono::steady_clock::now();
  for (int i = 0; i < kJobs; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = client.Submit(JobYaml("job" + std::to_string(i), 1, 1)); });
  }
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  WARN("20 concurrent submits (stored with fsync) answered in " << seconds << " s");
  std::set<std::string> ids;
  for (int i = 0; i < kJobs; ++i) {
    REQUIRE(results[i].ok());
    ids.insert(results[i]->job_id());
  }
  REQUIRE(ids.size() == kJobs);
  CHECK(*ids.begin() == "j-000001");
  CHECK(*ids.rbegin() == "j-000020");

  std::vector<v1::Assignment> starts = node.AwaitStarts(kJobs);
  REQUIRE(starts.size() == kJobs);
  std::set<std::string> started;
  for (const v1::Assignment& a : starts) {
    started.insert(a.job_id());
    CHECK(a.threads() == 20);  // 20 cores, one rank of this job on the node
    node.Run(a);
  }
  CHECK(started == ids);
  REQUIRE(node.Heartbeat().ok());
  for (const v1::Assignment& a : starts) node.Exit(a.job_id(), 1, 0, 0);
  REQUIRE(node.Heartbeat().ok());
  for (const std::string& id : ids) CHECK(client.Get(id)->state() == v1::SUCCEEDED);
  v1::ListJobsRequest active;
  active.set_active_only(true);
  v1::ListJobsResponse listed;
  REQUIRE(client.jobs().ListJobs(client.Context().get(), active, &listed).ok());
  CHECK(listed.jobs_size() == 0);
}

TEST_CASE(
    "Start refuses bad options, a taken port and a listener beyond loopback without security") {
  CoordinatorOptions options = TestOptions("coord_start");
  CoordinatorOptions no_dir = options;
  no_dir.state_dir.clear();
  CHECK(absl::IsInvalidArgument(Coordinator::Start(no_dir).status()));
  CoordinatorOptions lease = options;
  lease.lease_ms = lease.heartbeat_ms;
  CHECK(absl::IsInvalidArgument(Coordinator::Start(lease).status()));
  CoordinatorOptions open = options;
  open.listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<Coordinator>> refused = Coordinator::Start(open);
  CHECK(absl::IsFailedPrecondition(refused.status()));
  CHECK(std::string(refused.status().message()).find("--token-file") != std::string::npos);

  auto first = Coordinator::Start(options).value();
  CoordinatorOptions same_port = TestOptions("coord_start_2");
  same_port.listen = first->address();
  absl::StatusOr<std::unique_ptr<Coordinator>> taken = Coordinator::Start(same_port);
  CHECK(absl::IsUnavailable(taken.status()));
  CHECK(std::string(taken.status().message()) ==
        "cannot listen on " + first->address() + " (address in use?)");
}

}  // namespace
}  // namespace colossal::coordinator
