// JobStore: every column round-trips, writes land in queue order, many threads share
// commits, the database is in WAL mode, and queued writes survive a close.
#include "runtime/coordinator/job_store.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <thread>

#include "runtime/coordinator/test_cluster.h"

namespace colossal::coordinator {
namespace {

// A scalar of a query on the database file, read with a connection of its own.
std::string Query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

v1::Job FullJob() {
  v1::Job j;
  j.set_id("j-000007");
  j.set_name("full");
  j.set_state(v1::RESTARTING);
  j.set_attempt(3);
  j.set_step(120);
  j.set_total_steps(500);
  j.set_loss(2.125);
  j.set_val_loss(-1);
  j.set_message("rank 1 on node n exited with code 1; restart 2 of 3");
  j.set_submitted_unix_ms(1000);
  j.set_started_unix_ms(2000);
  j.set_finished_unix_ms(0);
  j.set_restarts(2);
  j.set_world_size(2);
  j.set_run_dir("/runs/full");
  j.set_spec_yaml("name: \"full\"\n");
  j.set_exit_code(137);
  j.add_ranks()->set_rank(0);  // not stored: attempts hold placements
  return j;
}

TEST_CASE("jobs, attempts and nodes round-trip; events are appended") {
  const std::string path = testing::FreshDir("store_roundtrip") + "/state.db";
  {
    auto store = JobStore::Open(path).value();
    store->PutJob(7, FullJob());
    AttemptRow attempt;
    attempt.job_id = "j-000007";
    attempt.attempt = 3;
    attempt.master_addr = "10.0.0.1";
    attempt.master_port = 30098;
    attempt.scheduled_ms = 3000;
    for (int r = 0; r < 2; ++r) {
      v1::RankPlacement& p = attempt.ranks.emplace_back();
      p.set_rank(r);
      p.set_node_id(r == 0 ? "node-a" : "node-b");
      p.set_local_rank(0);
      p.set_pid(r == 0 ? 4242 : 0);
      p.set_state(r == 0 ? "running" : "exited(1)");
      if (r == 0) p.set_device("cuda:1");  // rank 1 ran on the CPU
    }
    store->PutAttempt(attempt);
    attempt.attempt = 2;  // an older attempt: not the job's current one
    attempt.ranks.clear();
    store->PutAttempt(attempt);
    store->AddEvent("j-000007", 1000, 0, v1::PENDING, "submitted");
    store->AddEvent("j-000007", 3000, 3, v1::SCHEDULED, "placed");
    NodeRow node;
    node.id = "node-a";
    node.hostname = "host-a";
    node.address = "10.0.0.1";
    node.slots = 8;
    node.cpu_cores = 64;
    node.devices = {"cuda:0 NVIDIA H100 (79.1 GiB)", "cuda:1 NVIDIA H100 (79.1 GiB)"};
    node.version = "v1";
    node.registered_ms = 500;
    node.last_seen_ms = 9000;
    node.alive = true;
    store->PutNode(node);
    CHECK(store->HasPending());
    REQUIRE(store->Sync().ok());
    CHECK_FALSE(store->HasPending());
  }
  CHECK(Query(path, "PRAGMA journal_mode") == "wal");
  CHECK(Query(path, "SELECT count(*) FROM events WHERE job_id = 'j-000007'") == "2");
  CHECK(Query(path, "SELECT state FROM events ORDER BY id DESC LIMIT 1") == "SCHEDULED");
  CHECK(Query(path, "SELECT state FROM jobs") == "RESTARTING");

  auto store = JobStore::Open(path).value();
  StoreSnapshot snapshot = store->Load().value();
  REQUIRE(snapshot.jobs.size() == 1);
  const StoredJob& s = snapshot.jobs[0];
  CHECK(s.seq == 7);
  v1::Job expected = FullJob();
  expected.clear_ranks();
  CHECK(s.job.SerializeAsString() == expected.SerializeAsString());
  REQUIRE(s.attempt.has_value());
  CHECK(s.attempt->attempt == 3);
  CHECK(s.attempt->master_addr == "10.0.0.1");
  CHECK(s.attempt->master_port == 30098);
  CHECK(s.attempt->scheduled_ms == 3000);
  REQUIRE(s.attempt->ranks.size() == 2);
  CHECK(s.attempt->ranks[0].node_id() == "node-a");
  CHECK(s.attempt->ranks[0].pid() == 4242);
  CHECK(s.attempt->ranks[0].state() == "running");
  CHECK(s.attempt->ranks[0].device() == "cuda:1");
  CHECK(s.attempt->ranks[1].device().empty());
  CHECK(s.attempt->ranks[1].rank() == 1);
  CHECK(s.attempt->ranks[1].state() == "exited(1)");
  REQUIRE(snapshot.nodes.size() == 1);
  const NodeRow& n = snapshot.nodes[0];
  CHECK(n.hostname == "host-a");
  CHECK(n.slots == 8);
  CHECK(n.cpu_cores == 64);
  CHECK(n.devices ==
        std::vector<std::string>{"cuda:0 NVIDIA H100 (79.1 GiB)", "cuda:1 NVIDIA H100 (79.1 GiB)"});
  CHECK(n.last_seen_ms == 9000);
  CHECK(n.alive);
}

TEST_CASE("writes land in queue order; progress touches only its columns; close commits") {
  const std::string path = testing::FreshDir("store_order") + "/state.db";
  {
    auto store = JobStore::Open(path).value();
    v1::Job job = FullJob();
    job.set_state(v1::PENDING);
    store->PutJob(7, job);
    job.set_state(v1::RUNNING);
    store->PutJob(7, job);
    job.set_step(300);
    job.set_loss(1.5);
    job.set_state(v1::FAILED);  // PutProgress writes step and loss, not the state
    store->PutProgress(job);
  }  // no Sync: the destructor commits
  auto store = JobStore::Open(path).value();
  StoreSnapshot snapshot = store->Load().value();
  REQUIRE(snapshot.jobs.size() == 1);
  CHECK(snapshot.jobs[0].job.state() == v1::RUNNING);
  CHECK(snapshot.jobs[0].job.step() == 300);
  CHECK(snapshot.jobs[0].job.loss() == 1.5);
}

TEST_CASE("many threads writing and syncing at once lose nothing") {
  const std::string path = testing::FreshDir("store_threads") + "/state.db";
  auto store = JobStore::Open(path).value();
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        v1::Job job = FullJob();
        const int64_t seq = 1 + t * kEach + i;
        job.set_id("j-" + std::to_string(seq));
        store->PutJob(seq, job);
        if (!store->Sync().ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(store->Load()->jobs.size() == kThreads * kEach);
}

TEST_CASE("a state store that cannot be opened is UNAVAILABLE naming the path") {
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open("/nonexistent-dir/state.db");
  CHECK(absl::IsUnavailable(store.status()));
  CHECK(std::string(store.status().message()).find("/nonexistent-dir/state.db") !=
        std::string::npos);
}

}  // namespace
}  // namespace colossal::coordinator
