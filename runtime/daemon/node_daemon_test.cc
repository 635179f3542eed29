// The node daemon against an in-process fake coordinator (NodeService on 127.0.0.1):
// registration, worker environment, logs, exits and their resends, coordinator outages
// and restarts, re-registration, stops, duplicates, start failures, and shutdown.
// Workers are /bin/sh scripts (the daemon appends "--spec PATH": "$@" sees it).
#include "runtime/daemon/node_daemon.h"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <map>

#include "runtime/base/logging.h"
#include "runtime/daemon/devices.h"
#include "runtime/daemon/fake_coordinator.h"
#include "runtime/daemon/test_util.h"

namespace colossal::daemon {
namespace {

using namespace std::chrono_literals;
using testing::Alive;
using testing::Eventually;
using testing::FakeCoordinator;
using testing::RankKey;
using testing::ReadFile;
using testing::ScratchDir;
using Received = FakeCoordinator::Received;

DaemonOptions Options(const FakeCoordinator& fake, const std::string& dir,
                      const std::string& script) {
  base::InitLogging();
  DaemonOptions o;
  o.coordinator = fake.address();
  o.node_id = "node-a";
  o.state_dir = dir;
  o.worker_command = {"/bin/sh", "-c", script, "worker"};
  o.heartbeat_ms = 100;
  o.rpc_timeout_ms = 1000;
  return o;
}

std::unique_ptr<NodeDaemon> StartDaemon(const DaemonOptions& o) {
  auto daemon = NodeDaemon::Start(o);
  REQUIRE(daemon.ok());
  return std::move(daemon).value();
}

v1::Assignment Assignment(const std::string& job, int attempt, int rank) {
  v1::Assignment a;
  a.set_job_id(job);
  a.set_attempt(attempt);
  a.set_rank(rank);
  a.set_local_rank(rank);
  a.set_world_size(2);
  a.set_local_world_size(2);
  a.set_master_addr("127.0.0.1");
  a.set_master_port(29511);
  a.set_threads(1);
  a.set_spec_yaml("name: " + job + "\n");
  return a;
}

v1::HeartbeatResponse Starts(std::initializer_list<v1::Assignment> assignments) {
  v1::HeartbeatResponse r;
  for (const auto& a : assignments) *r.add_start() = a;
  return r;
}

// The pid the latest heartbeat reports for `rank` of (job, attempt), or 0.
pid_t ReportedPid(const Received& r, const std::string& job, int attempt, int rank) {
  if (r.heartbeats.empty()) return 0;
  for (const auto& w : r.heartbeats.back().running()) {
    if (w.job_id() == job && w.attempt() == attempt && w.rank() == rank) {
      return static_cast<pid_t>(w.pid());
    }
  }
  return 0;
}

std::vector<v1::WorkerExit> ExitsOf(const Received& r, const std::string& job) {
  std::vector<v1::WorkerExit> out;
  for (const auto& e : r.exits) {
    if (e.job_id() == job) out.push_back(e);
  }
  return out;
}

TEST_CASE("registers node id, hostname, address, slots, cores and devices; heartbeats as told") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  fake->set_heartbeat_ms(50);
  DaemonOptions o = Options(*fake, ScratchDir("nd-register"), "exit 0");
  o.node_id.clear();
  o.slots = 2;
  o.address = "127.0.0.5";
  o.heartbeat_ms = 5000;  // only the coordinator's 50 ms can make the next wait short
  auto daemon = StartDaemon(o);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  REQUIRE(daemon->node_id() == std::string(host) + "-" + std::to_string(getpid()));
  REQUIRE(fake->WaitFor([](const Received& r) { return r.heartbeats.size() >= 6; }, 3000ms));
  fake->Read([&](const Received& r) {
    REQUIRE(r.registers.size() == 1);
    const v1::RegisterNodeRequest& reg = r.registers[0];
    REQUIRE(reg.node_id() == daemon->node_id());
    REQUIRE(reg.hostname() == host);
    REQUIRE(reg.address() == "127.0.0.5");
    REQUIRE(reg.slots() == 2);
    REQUIRE(reg.cpu_cores() == sysconf(_SC_NPROCESSORS_ONLN));
    REQUIRE_FALSE(reg.version().empty());
    REQUIRE(reg.running_size() == 0);
    int cpus = 0, cudas = 0;
    for (const auto& d : reg.devices()) {
      if (d.kind() == "cpu") REQUIRE(d.index() == cpus++);
      if (d.kind() == "cuda") ++cudas;
    }
    REQUIRE(cpus == reg.cpu_cores());
    REQUIRE(cudas == static_cast<int>(DiscoverCudaDevices().size()));  // 0 without a driver
    for (const auto& hb : r.heartbeats) REQUIRE(hb.node_id() == daemon->node_id());
    return 0;
  });
}

TEST_CASE("the worker sees the torchrun and COLOSSAL_* environment; logs arrive whole, in order") {
  const std::string dir = ScratchDir("nd-env-logs");
  const std::string token = dir + "/token";
  { std::ofstream(token) << "s3cret\n"; }
  auto fake = FakeCoordinator::Start(0, "s3cret");
  REQUIRE(fake);
  // The environment and spec, then 2.2 MB of numbered lines (more than two heartbeats).
  DaemonOptions o = Options(*fake, dir + "/state",
                            "env; echo \"ARGS=$*\"; cat \"$2\"; i=0; "
                            "while [ $i -lt 22000 ]; do printf 'line %093d\\n' $i; i=$((i+1)); "
                            "done");
  o.security.token_file = token;
  auto daemon = StartDaemon(o);
  v1::Assignment a = Assignment("job-env", 3, 1);
  (*a.mutable_env())["JOB_KNOB"] = "42";
  a.set_threads(5);
  a.set_spec_yaml("name: job-env\ntrain: {steps: 7}\n");
  fake->Assign(a);
  const RankKey key{"job-env", 3, 1};
  REQUIRE(fake->WaitFor([](const Received& r) { return !r.exits.empty(); }, 20000ms));
  const std::string rank_dir = dir + "/state/jobs/job-env/attempt-3/rank-1";
  const std::string file = ReadFile(rank_dir + "/worker.log");
  REQUIRE(file.size() > 2100000);
  fake->Read([&](const Received& r) {
    REQUIRE(r.unauthenticated == 0);
    REQUIRE(r.log_errors.empty());
    REQUIRE(r.logs.at(key) == file);
    // The exit came with (or after) the last bytes of the log.
    REQUIRE(r.log_size_at_first_exit.at(key) == file.size());
    REQUIRE(r.exits[0].exit_code() == 0);
    REQUIRE(r.exits[0].signal() == 0);
    int carrying = 0;
    for (const auto& hb : r.heartbeats) {
      size_t bytes = 0;
      for (const auto& c : hb.logs()) bytes += c.data().size();
      REQUIRE(bytes <= kLogBytesPerHeartbeat);
      carrying += bytes > 0;
    }
    REQUIRE(carrying >= 3);
    return 0;
  });
  auto has = [&](const std::string& line) {
    REQUIRE_THAT(file, Catch::Contains("\n" + line + "\n") || Catch::StartsWith(line + "\n"));
  };
  has("RANK=1");
  has("WORLD_SIZE=2");
  has("LOCAL_RANK=1");
  has("LOCAL_WORLD_SIZE=2");
  has("MASTER_ADDR=127.0.0.1");
  has("MASTER_PORT=29511");
  has("COLOSSAL_COORDINATOR=" + fake->address());
  has("COLOSSAL_JOB_ID=job-env");
  has("COLOSSAL_ATTEMPT=3");
  has("COLOSSAL_THREADS=5");
  has("COLOSSAL_TOKEN_FILE=" + token);
  has("JOB_KNOB=42");
  has("ARGS=--spec " + rank_dir + "/job.yaml");
  has("name: job-env\ntrain: {steps: 7}");
  REQUIRE(ReadFile(rank_dir + "/job.yaml") == a.spec_yaml());
}

TEST_CASE("exit codes and signals are reported with the tail of the log") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-exits"),
                                    "if [ \"$RANK\" = 0 ]; then i=1; while [ $i -le 30 ]; do "
                                    "echo \"out $i\"; i=$((i+1)); done; exit 3; fi; "
                                    "echo dying >&2; kill -KILL $$"));
  const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  fake->Script(Starts({Assignment("jx", 1, 0), Assignment("jx", 1, 1)}));
  REQUIRE(fake->WaitFor([](const Received& r) { return ExitsOf(r, "jx").size() >= 2; }, 5000ms));
  const int64_t after = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  std::map<int, v1::WorkerExit> exits;
  fake->Read([&](const Received& r) {
    for (const auto& e : ExitsOf(r, "jx")) exits[e.rank()] = e;
    return 0;
  });
  std::string tail;
  for (int i = 11; i <= 30; ++i) tail += "out " + std::to_string(i) + "\n";
  REQUIRE(exits.at(0).exit_code() == 3);
  REQUIRE(exits.at(0).signal() == 0);
  REQUIRE(exits.at(0).tail() == tail);
  REQUIRE(exits.at(1).signal() == SIGKILL);
  REQUIRE(exits.at(1).tail() == "dying\n");
  for (const auto& [rank, e] : exits) {
    REQUIRE(e.attempt() == 1);
    REQUIRE(e.unix_ms() >= before);
    REQUIRE(e.unix_ms() <= after);
  }
  // Ended workers are no longer reported as running.
  REQUIRE(fake->WaitFor(
      [](const Received& r) {
        return !r.heartbeats.empty() && r.heartbeats.back().running_size() == 0 &&
               r.heartbeats.back().exits_size() == 0;
      },
      2000ms));
}

TEST_CASE("an exit is resent until a heartbeat answer has been received after it") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  fake->FailHeartbeatsWithExits(3);
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-resend"), "echo bye; exit 7"));
  fake->Assign(Assignment("jr", 1, 0));
  REQUIRE(fake->WaitFor([](const Received& r) { return r.exits.size() >= 4; }, 10000ms));
  size_t heartbeats = fake->Read([](const Received& r) { return r.heartbeats.size(); });
  // Five more answered heartbeats: the acknowledged exit is not sent again.
  REQUIRE(fake->WaitFor([&](const Received& r) { return r.heartbeats.size() >= heartbeats + 5; },
                        5000ms));
  fake->Read([](const Received& r) {
    REQUIRE(r.exits.size() == 4);
    for (const auto& e : r.exits) {
      REQUIRE(e.job_id() == "jr");
      REQUIRE(e.exit_code() == 7);
      REQUIRE(e.tail() == "bye\n");
      REQUIRE(e.unix_ms() == r.exits[0].unix_ms());  // the same exit, resent
    }
    REQUIRE(r.logs.at(RankKey{"jr", 1, 0}) == "bye\n");
    REQUIRE(r.log_errors.empty());
    return 0;
  });
}

TEST_CASE("a coordinator down for a while: workers keep running, everything is reported after") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  const int port = fake->port();
  // Rank 0 ticks until stopped; rank 1 exits 5 during the outage.
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-outage"),
                                    "if [ \"$RANK\" = 1 ]; then /bin/sleep 1; exit 5; fi; i=0; "
                                    "while :; do echo \"tick $i\"; i=$((i+1)); /bin/sleep 0.1; done"));
  fake->Script(Starts({Assignment("jo", 1, 0), Assignment("jo", 1, 1)}));
  REQUIRE(fake->WaitFor([](const Received& r) { return ReportedPid(r, "jo", 1, 1) > 0; }, 5000ms));
  const pid_t ticker = fake->Read([](const Received& r) { return ReportedPid(r, "jo", 1, 0); });
  REQUIRE(ticker > 0);
  const RankKey key{"jo", 1, 0};
  fake->Shutdown();
  const std::string before = fake->Read([&](const Received& r) { return r.logs.count(key) ? r.logs.at(key) : std::string(); });
  REQUIRE(fake->Read([](const Received& r) { return r.exits.size(); }) == 0);
  fake.reset();

  std::this_thread::sleep_for(3000ms);  // rank 1 exits meanwhile; the daemon retries
  REQUIRE(Alive(ticker));

  auto restarted = FakeCoordinator::Start(port);
  REQUIRE(restarted);
  restarted->RequireRegistration();  // it does not know the node until it registers again
  restarted->SeedLog(key, before);
  // Back within one retry interval (plus a connect), not on gRPC's own reconnect schedule
  // for the channel that failed (seconds apart in gRPC 1.51): the coordinator gives nodes
  // one lease to re-register after it restarts.
  REQUIRE(restarted->WaitFor([](const Received& r) { return !r.registers.empty(); },
                             std::chrono::milliseconds(kMaxRetryMs) + 1500ms));
  REQUIRE(restarted->WaitFor([](const Received& r) { return !r.exits.empty(); }, 3000ms));
  REQUIRE(restarted->WaitFor(
      [&](const Received& r) { return r.logs.at(key).size() > before.size() + 100; }, 3000ms));
  restarted->Read([&](const Received& r) {
    const auto& reg = r.registers[0];
    REQUIRE(reg.node_id() == "node-a");
    REQUIRE(reg.running_size() == 1);
    REQUIRE(reg.running(0).job_id() == "jo");
    REQUIRE(reg.running(0).rank() == 0);
    REQUIRE(reg.running(0).pid() == ticker);
    REQUIRE(r.exits.size() == 1);
    REQUIRE(r.exits[0].rank() == 1);
    REQUIRE(r.exits[0].exit_code() == 5);
    REQUIRE(r.log_errors.empty());
    REQUIRE(r.heartbeats.back().running_size() == 1);
    return 0;
  });
  REQUIRE(Alive(ticker));
  const std::string file = ReadFile(daemon->state_dir() + "/jobs/jo/attempt-1/rank-0/worker.log");
  const std::string shipped = restarted->Read([&](const Received& r) { return r.logs.at(key); });
  REQUIRE(file.compare(0, shipped.size(), shipped) == 0);  // one continuous log across both
  daemon->Stop(/*kill_workers=*/true, 1000);
  REQUIRE_FALSE(Alive(ticker));
}

TEST_CASE("reregister = true makes the daemon register again with its running workers") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-reregister"), "exec /bin/sleep 30"));
  fake->Assign(Assignment("jg", 2, 1));
  REQUIRE(fake->WaitFor([](const Received& r) { return ReportedPid(r, "jg", 2, 1) > 0; }, 5000ms));
  const pid_t pid = fake->Read([](const Received& r) { return ReportedPid(r, "jg", 2, 1); });
  v1::HeartbeatResponse again;
  again.set_reregister(true);
  fake->Script(again);
  REQUIRE(fake->WaitFor([](const Received& r) { return r.registers.size() >= 2; }, 3000ms));
  fake->Read([&](const Received& r) {
    REQUIRE(r.registers[0].running_size() == 0);
    const auto& reg = r.registers[1];
    REQUIRE(reg.running_size() == 1);
    REQUIRE(reg.running(0).job_id() == "jg");
    REQUIRE(reg.running(0).attempt() == 2);
    REQUIRE(reg.running(0).rank() == 1);
    REQUIRE(reg.running(0).pid() == pid);
    return 0;
  });
  REQUIRE(Alive(pid));
  daemon.reset();  // ~NodeDaemon kills its workers
  REQUIRE_FALSE(Alive(pid));
}

TEST_CASE("StopAttempt SIGKILLs a worker that ignores SIGTERM once the grace is over") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-stop"),
                                    "trap '' TERM; echo ready; while :; do /bin/sleep 0.05; done"));
  fake->Assign(Assignment("js", 1, 0));
  const RankKey key{"js", 1, 0};
  REQUIRE(fake->WaitFor([&](const Received& r) { return r.logs.count(key) && r.logs.at(key) == "ready\n"; },
                        5000ms));
  const pid_t pid = fake->Read([](const Received& r) { return ReportedPid(r, "js", 1, 0); });
  const auto start = std::chrono::steady_clock::now();
  fake->Stop("js", 1, 700);
  REQUIRE(fake->WaitFor([](const Received& r) { return !r.exits.empty(); }, 5000ms));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(elapsed >= 700ms);
  REQUIRE(elapsed < 3000ms);
  fake->Read([](const Received& r) {
    REQUIRE(r.exits[0].signal() == SIGKILL);
    REQUIRE(r.exits[0].tail() == "ready\n");
    return 0;
  });
  REQUIRE_FALSE(Alive(pid));
}

TEST_CASE("a duplicate assignment is ignored") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  const std::string dir = ScratchDir("nd-dup");
  auto daemon = StartDaemon(Options(*fake, dir, "echo run >> \"" + dir + "/runs\"; exec /bin/sleep 30"));
  const v1::Assignment a = Assignment("jd", 1, 0);
  fake->Script(Starts({a, a}));
  fake->Assign(a);
  REQUIRE(fake->WaitFor([](const Received& r) { return r.heartbeats.size() >= 8; }, 5000ms));
  REQUIRE(ReadFile(dir + "/runs") == "run\n");
  fake->Read([](const Received& r) {
    REQUIRE(r.heartbeats.back().running_size() == 1);
    REQUIRE(r.exits.empty());
    return 0;
  });
}

TEST_CASE("a missing worker binary is reported as exit 127 with the reason") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  const std::string dir = ScratchDir("nd-127");
  DaemonOptions o = Options(*fake, dir, "");
  o.worker_command = {dir + "/bin/colossal-worker"};
  auto daemon = StartDaemon(o);
  fake->Assign(Assignment("jm", 1, 0));
  REQUIRE(fake->WaitFor([](const Received& r) { return !r.exits.empty(); }, 5000ms));
  const std::string reason = "exec " + dir + "/bin/colossal-worker: No such file or directory";
  fake->Read([&](const Received& r) {
    REQUIRE(r.exits[0].exit_code() == 127);
    REQUIRE(r.exits[0].signal() == 0);
    REQUIRE_THAT(r.exits[0].tail(), Catch::Contains(reason));
    REQUIRE_THAT(r.logs.at(RankKey{"jm", 1, 0}), Catch::Contains(reason));
    return 0;
  });
}

TEST_CASE("Stop(kill_workers) leaves no worker or worker child alive, within the grace") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  const std::string dir = ScratchDir("nd-kill");
  // Rank 0 ignores SIGTERM; rank 1 has a child of its own; rank 2 just sleeps.
  auto daemon = StartDaemon(Options(
      *fake, dir,
      "case $RANK in 0) trap '' TERM; echo ready; while :; do /bin/sleep 0.05; done;; "
      "1) /bin/sleep 30 & echo $!; wait;; *) echo ready; exec /bin/sleep 30;; esac"));
  fake->Script(Starts({Assignment("jk", 1, 0), Assignment("jk", 1, 1), Assignment("jk", 1, 2)}));
  REQUIRE(fake->WaitFor(
      [](const Received& r) {
        for (int rank = 0; rank < 3; ++rank) {
          if (!r.logs.count(RankKey{"jk", 1, rank})) return false;
        }
        return ReportedPid(r, "jk", 1, 2) > 0;
      },
      5000ms));
  std::vector<pid_t> pids;
  fake->Read([&](const Received& r) {
    for (int rank = 0; rank < 3; ++rank) pids.push_back(ReportedPid(r, "jk", 1, rank));
    return 0;
  });
  const pid_t grandchild = std::stoi(ReadFile(dir + "/jobs/jk/attempt-1/rank-1/worker.log"));
  REQUIRE(Alive(grandchild));
  const auto start = std::chrono::steady_clock::now();
  daemon->Stop(/*kill_workers=*/true, 400);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(elapsed >= 400ms);  // rank 0 needed the SIGKILL
  REQUIRE(elapsed < 2500ms);
  for (pid_t pid : pids) {
    REQUIRE(pid > 0);
    REQUIRE(kill(pid, 0) == -1);  // reaped: the pid is gone, not a zombie
    REQUIRE(errno == ESRCH);
  }
  REQUIRE(Eventually([&] { return !Alive(grandchild); }, 3000ms));
  daemon->Stop(/*kill_workers=*/true);  // idempotent
  daemon->Wait();
}

TEST_CASE("Stop(false) stops heartbeats but not workers; the destructor kills them") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  auto daemon = StartDaemon(Options(*fake, ScratchDir("nd-stop-false"), "exec /bin/sleep 30"));
  fake->Assign(Assignment("jf", 1, 0));
  REQUIRE(fake->WaitFor([](const Received& r) { return ReportedPid(r, "jf", 1, 0) > 0; }, 5000ms));
  const pid_t pid = fake->Read([](const Received& r) { return ReportedPid(r, "jf", 1, 0); });
  std::thread waiter([&] { daemon->Wait(); });
  daemon->Stop(/*kill_workers=*/false);
  waiter.join();
  const size_t heartbeats = fake->Read([](const Received& r) { return r.heartbeats.size(); });
  std::this_thread::sleep_for(400ms);
  REQUIRE(fake->Read([](const Received& r) { return r.heartbeats.size(); }) == heartbeats);
  REQUIRE(Alive(pid));
  daemon.reset();
  REQUIRE_FALSE(Alive(pid));
}

TEST_CASE("Stop does not wait out an RPC in flight; a wrong token is retried, not fatal") {
  auto fake = FakeCoordinator::Start(0, "right");
  REQUIRE(fake);
  const std::string dir = ScratchDir("nd-cancel");
  { std::ofstream(dir + "/token") << "wrong"; }
  DaemonOptions o = Options(*fake, dir + "/state", "exit 0");
  o.security.token_file = dir + "/token";
  auto daemon = StartDaemon(o);
  REQUIRE(fake->WaitFor([](const Received& r) { return r.unauthenticated >= 3; }, 5000ms));
  REQUIRE(fake->Read([](const Received& r) { return r.registers.size(); }) == 0);
  daemon.reset();

  // A coordinator that does not answer heartbeats within the daemon's 5 s deadline.
  { std::ofstream(dir + "/token", std::ios::trunc) << "right"; }
  fake->set_answer_delay(10000ms);
  o.rpc_timeout_ms = 5000;
  daemon = StartDaemon(o);
  REQUIRE(fake->WaitFor([](const Received& r) { return !r.registers.empty(); }, 5000ms));
  std::this_thread::sleep_for(200ms);  // the first heartbeat is in flight
  const auto start = std::chrono::steady_clock::now();
  daemon->Stop(/*kill_workers=*/true);
  REQUIRE(std::chrono::steady_clock::now() - start < 1000ms);
  fake->Shutdown();
}

TEST_CASE("Start rejects bad options and an unreadable token file") {
  auto fake = FakeCoordinator::Start();
  REQUIRE(fake);
  const std::string dir = ScratchDir("nd-options");
  DaemonOptions o = Options(*fake, dir, "exit 0");
  o.coordinator = "no-port";
  REQUIRE(absl::IsInvalidArgument(NodeDaemon::Start(o).status()));
  o = Options(*fake, dir, "exit 0");
  o.slots = 0;
  REQUIRE(absl::IsInvalidArgument(NodeDaemon::Start(o).status()));
  o = Options(*fake, dir, "exit 0");
  o.security.token_file = dir + "/absent-token";
  auto bad = NodeDaemon::Start(o);
  REQUIRE(absl::IsNotFound(bad.status()));
  REQUIRE_THAT(std::string(bad.status().message()), Catch::Contains("absent-token"));
}

}  // namespace
}  // namespace colossal::daemon
