// Test double of the coordinator's NodeService: listens on 127.0.0.1 (port 0 or a given
// one), records every Register and Heartbeat, reassembles log chunks by offset (and
// records any gap or mismatch), and answers heartbeats with responses a test scripts.
// Test-only; not part of the daemon library.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/coordinator.grpc.pb.h"
#include "runtime/rpc/rpc.h"

namespace colossal::daemon::testing {

using RankKey = std::tuple<std::string, int, int>;  // job, attempt, rank

class FakeCoordinator final : public v1::NodeService::Service {
 public:
  // port 0: a free one. token: required bearer token ("" for none).
  static std::unique_ptr<FakeCoordinator> Start(int port = 0, std::string token = "") {
    auto fake = std::unique_ptr<FakeCoordinator>(new FakeCoordinator(std::move(token)));
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials(), &bound);
    builder.RegisterService(fake.get());
    fake->server_ = builder.BuildAndStart();
    if (fake->server_ == nullptr || bound == 0) return nullptr;
    fake->port_ = bound;
    return fake;
  }

  ~FakeCoordinator() override { Shutdown(); }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (down_) return;
      down_ = true;
    }
    cv_.notify_all();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // --- scripting (thread-safe) ---
  // Answers the next heartbeats, one each, in order; later ones get empty answers.
  void Script(v1::HeartbeatResponse response) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.push_back(std::move(response));
  }
  void Assign(const v1::Assignment& a) {
    v1::HeartbeatResponse r;
    *r.add_start() = a;
    Script(std::move(r));
  }
  void Stop(const std::string& job, int attempt, int grace_ms) {
    v1::HeartbeatResponse r;
    auto* stop = r.add_stop();
    stop->set_job_id(job);
    stop->set_attempt(attempt);
    stop->set_grace_ms(grace_ms);
    Script(std::move(r));
  }
  // The heartbeat_ms a Register answer carries (0: none).
  void set_heartbeat_ms(int64_t ms) { std::lock_guard<std::mutex> l(mu_); heartbeat_ms_ = ms; }
  // Heartbeats that carry exits fail with UNAVAILABLE (after being recorded) this many times.
  void FailHeartbeatsWithExits(int n) { std::lock_guard<std::mutex> l(mu_); fail_with_exits_ = n; }
  // Heartbeats of nodes that have not registered with this instance get NOT_FOUND.
  void RequireRegistration() { std::lock_guard<std::mutex> l(mu_); require_registration_ = true; }
  // Logs this instance already holds (a restarted coordinator reads them from its store).
  void SeedLog(const RankKey& key, std::string data) {
    std::lock_guard<std::mutex> l(mu_);
    received_.logs[key] = std::move(data);
  }
  // Heartbeat handlers wait this long before answering (or until Shutdown).
  void set_answer_delay(std::chrono::milliseconds d) { std::lock_guard<std::mutex> l(mu_); delay_ = d; }

  // --- what arrived ---
  struct Received {
    std::vector<v1::RegisterNodeRequest> registers;
    std::vector<v1::HeartbeatRequest> heartbeats;   // every heartbeat, failed ones too
    std::vector<v1::WorkerExit> exits;              // every exit received, duplicates too
    std::map<RankKey, std::string> logs;            // reassembled by offset
    std::map<RankKey, size_t> log_size_at_first_exit;
    std::vector<std::string> log_errors;            // gaps and mismatches
    int unauthenticated = 0;
  };

  // Waits (bounded) until pred(received) holds; returns whether it did.
  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(received_); });
  }
  template <typename Fn>
  auto Read(Fn fn) {
    std::lock_guard<std::mutex> lock(mu_);
    return fn(received_);
  }

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterNodeRequest* request,
                        v1::RegisterNodeResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (grpc::Status s = auth_.Check(context); !s.ok()) {
      ++received_.unauthenticated;
      cv_.notify_all();
      return s;
    }
    received_.registers.push_back(*request);
    registered_.insert(request->node_id());
    response->set_node_id(request->node_id());
    response->set_heartbeat_ms(heartbeat_ms_);
    response->set_lease_ms(10000);
    cv_.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (grpc::Status s = auth_.Check(context); !s.ok()) {
      ++received_.unauthenticated;
      cv_.notify_all();
      return s;
    }
    if (delay_.count() > 0) {
      cv_.wait_for(lock, delay_, [this] { return down_; });
    }
    received_.heartbeats.push_back(*request);
    cv_.notify_all();
    if (require_registration_ && !registered_.count(request->node_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown node " + request->node_id());
    }
    for (const v1::LogChunk& chunk : request->logs()) {
      std::string& log = received_.logs[RankKey{chunk.job_id(), chunk.attempt(), chunk.rank()}];
      const size_t offset = static_cast<size_t>(chunk.offset());
      if (offset > log.size()) {
        received_.log_errors.push_back("gap before offset " + std::to_string(offset));
        continue;
      }
      const std::string& data = chunk.data();
      const size_t overlap = std::min(log.size() - offset, data.size());
      if (log.compare(offset, overlap, data, 0, overlap) != 0) {
        received_.log_errors.push_back("resent bytes differ at offset " + std::to_string(offset));
      }
      log.append(data, overlap, std::string::npos);
    }
    for (const v1::WorkerExit& e : request->exits()) {
      received_.exits.push_back(e);
      const RankKey key{e.job_id(), e.attempt(), e.rank()};
      if (!received_.log_size_at_first_exit.count(key)) {
        received_.log_size_at_first_exit[key] = received_.logs[key].size();
      }
    }
    if (request->exits_size() > 0 && fail_with_exits_ > 0) {
      --fail_with_exits_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted failure");
    }
    if (!script_.empty()) {
      *response = std::move(script_.front());
      script_.pop_front();
    }
    return grpc::Status::OK;
  }

 private:
  explicit FakeCoordinator(std::string token) : auth_(std::move(token)) {}

  rpc::TokenAuth auth_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool down_ = false;
  Received received_;
  std::deque<v1::HeartbeatResponse> script_;
  std::set<std::string> registered_;
  int64_t heartbeat_ms_ = 0;
  int fail_with_exits_ = 0;
  bool require_registration_ = false;
  std::chrono::milliseconds delay_{0};
};

}  // namespace colossal::daemon::testing
