// The supervisor of one node's workers, without a coordinator: environment and spec file
// of a worker, duplicate assignments, start failures as exit 127, StopAttempt's
// TERM/grace/KILL, and log shipping (budget, offsets, resends, exits after their logs).
#include "runtime/daemon/supervisor.h"

#include <catch2/catch.hpp>

#include <signal.h>

#include <map>

#include "runtime/daemon/test_util.h"
#include "runtime/daemon/worker_process.h"

namespace colossal::daemon {
namespace {

using namespace std::chrono_literals;
using testing::Alive;
using testing::Eventually;
using testing::ReadFile;
using testing::ScratchDir;

SupervisorOptions Options(const std::string& dir, const std::string& script) {
  SupervisorOptions o;
  o.state_dir = dir;
  o.worker_command = {"/bin/sh", "-c", script, "worker"};
  o.coordinator = "127.0.0.1:29999";
  return o;
}

v1::Assignment Assignment(const std::string& job, int attempt, int rank) {
  v1::Assignment a;
  a.set_job_id(job);
  a.set_attempt(attempt);
  a.set_rank(rank);
  a.set_local_rank(rank % 2);
  a.set_world_size(4);
  a.set_local_world_size(2);
  a.set_master_addr("10.1.2.3");
  a.set_master_port(29501);
  a.set_threads(3);
  a.set_spec_yaml("name: test\nmodel: {type: gpt}\n");
  return a;
}

// Polls until `n` exits are queued (bounded); returns them in order, acknowledged.
std::vector<v1::WorkerExit> DrainExits(Supervisor& s, size_t n, std::chrono::milliseconds timeout) {
  std::vector<v1::WorkerExit> exits;
  Eventually(
      [&] {
        s.Poll();
        Outgoing out = s.Collect(1 << 20);
        s.Acknowledge(out);
        exits.insert(exits.end(), out.exits.begin(), out.exits.end());
        return exits.size() >= n;
      },
      timeout);
  return exits;
}

std::map<std::string, std::string> ParseEnv(const std::string& text) {
  std::map<std::string, std::string> env;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    const size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    pos = end + 1;
  }
  return env;
}

TEST_CASE("a worker gets the spec file, the torchrun environment and the COLOSSAL_* knobs") {
  const std::string dir = ScratchDir("sup-env");
  SupervisorOptions o = Options(dir, "echo \"SPEC_ARGS=$1 $2\"; env");
  o.token_file = "/etc/colossal/token";
  o.tls_ca = "/etc/colossal/ca.pem";
  Supervisor s(o);
  v1::Assignment a = Assignment("j1", 2, 3);
  (*a.mutable_env())["FOO"] = "bar baz";
  (*a.mutable_env())["COLOSSAL_THREADS"] = "7";  // the job's env comes last
  REQUIRE(s.Start(a));
  REQUIRE(s.Running().size() == 1);
  REQUIRE(s.Running()[0].pid() > 0);
  const auto exits = DrainExits(s, 1, 5000ms);
  REQUIRE(exits.size() == 1);
  REQUIRE(exits[0].exit_code() == 0);

  const std::string rank_dir = dir + "/jobs/j1/attempt-2/rank-3";
  REQUIRE(ReadFile(rank_dir + "/job.yaml") == a.spec_yaml());
  const auto env = ParseEnv(ReadFile(rank_dir + "/worker.log"));
  REQUIRE(env.at("SPEC_ARGS") == "--spec " + rank_dir + "/job.yaml");
  REQUIRE(env.at("RANK") == "3");
  REQUIRE(env.at("WORLD_SIZE") == "4");
  REQUIRE(env.at("LOCAL_RANK") == "1");
  REQUIRE(env.at("LOCAL_WORLD_SIZE") == "2");
  REQUIRE(env.at("MASTER_ADDR") == "10.1.2.3");
  REQUIRE(env.at("MASTER_PORT") == "29501");
  REQUIRE(env.at("COLOSSAL_COORDINATOR") == "127.0.0.1:29999");
  REQUIRE(env.at("COLOSSAL_JOB_ID") == "j1");
  REQUIRE(env.at("COLOSSAL_ATTEMPT") == "2");
  REQUIRE(env.at("COLOSSAL_THREADS") == "7");
  REQUIRE(env.at("COLOSSAL_TOKEN_FILE") == "/etc/colossal/token");
  REQUIRE(env.at("COLOSSAL_TLS_CA") == "/etc/colossal/ca.pem");
  REQUIRE(env.at("FOO") == "bar baz");
  // The daemon's own environment passes through.
  for (const auto& [name, value] : CurrentEnvironment()) {
    if (name == "PATH") REQUIRE(env.at("PATH") == value);
  }
}

TEST_CASE("an assignment already run here is ignored, during and after its run") {
  const std::string dir = ScratchDir("sup-dup");
  Supervisor s(Options(dir, "echo run >> \"$(dirname \"$2\")/../../runs\"; exec /bin/sleep 30"));
  const v1::Assignment a = Assignment("j", 1, 0);
  REQUIRE(s.Start(a));
  REQUIRE_FALSE(s.Start(a));
  REQUIRE(s.Running().size() == 1);
  const pid_t pid = static_cast<pid_t>(s.Running()[0].pid());
  REQUIRE(Eventually([&] { return ReadFile(dir + "/jobs/j/runs") == "run\n"; }, 5000ms));
  v1::StopAttempt stop;
  stop.set_job_id("j");
  stop.set_attempt(1);
  s.StopAttempt(stop);
  const auto exits = DrainExits(s, 1, 5000ms);
  REQUIRE(exits.size() == 1);
  REQUIRE(exits[0].signal() == SIGTERM);
  REQUIRE_FALSE(Alive(pid));
  REQUIRE_FALSE(s.Start(a));  // attempts are never re-run
  REQUIRE(s.running_count() == 0);
  REQUIRE(ReadFile(dir + "/jobs/j/runs") == "run\n");
  REQUIRE(s.Start(Assignment("j", 2, 0)));  // the next attempt does start
  s.KillAll(1000);
  REQUIRE(s.running_count() == 0);
}

TEST_CASE("start failures are exits with code 127 and the reason in the tail and the log") {
  const std::string dir = ScratchDir("sup-127");
  SupervisorOptions o = Options(dir, "");
  o.worker_command = {dir + "/no-such-worker"};
  Supervisor s(o);
  REQUIRE(s.Start(Assignment("j", 1, 0)));
  REQUIRE(s.running_count() == 0);
  Outgoing out = s.Collect(1 << 20);
  REQUIRE(out.exits.size() == 1);
  REQUIRE(out.exits[0].exit_code() == 127);
  REQUIRE(out.exits[0].signal() == 0);
  const std::string message = "exec " + dir + "/no-such-worker: No such file or directory";
  REQUIRE_THAT(out.exits[0].tail(), Catch::Contains(message));
  REQUIRE(out.logs.size() == 1);
  REQUIRE(out.logs[0].offset() == 0);
  REQUIRE_THAT(out.logs[0].data(), Catch::Contains(message));
  s.Acknowledge(out);
  REQUIRE(s.queued_exits() == 0);
  out = s.Collect(1 << 20);
  REQUIRE(out.exits.empty());
  REQUIRE(out.logs.empty());

  // A job id that is not a safe directory name is refused the same way.
  REQUIRE(s.Start(Assignment("../escape", 1, 0)));
  out = s.Collect(1 << 20);
  REQUIRE(out.exits.size() == 1);
  REQUIRE(out.exits[0].exit_code() == 127);
  REQUIRE_THAT(out.exits[0].tail(), Catch::Contains("invalid assignment: job id '../escape'"));
  REQUIRE_FALSE(std::filesystem::exists(dir + "/escape"));
}

TEST_CASE("StopAttempt: SIGTERM, then SIGKILL after the grace for workers that ignore it") {
  const std::string dir = ScratchDir("sup-stop");
  // Rank 0 ignores SIGTERM; rank 1 honours it; attempt 2 is not stopped.
  Supervisor s(Options(dir,
                       "if [ \"$RANK\" = 0 ]; then trap '' TERM; fi; echo ready; "
                       "while :; do /bin/sleep 0.05; done"));
  REQUIRE(s.Start(Assignment("j", 1, 0)));
  REQUIRE(s.Start(Assignment("j", 1, 1)));
  REQUIRE(s.Start(Assignment("j", 2, 2)));
  for (const char* rank : {"attempt-1/rank-0", "attempt-1/rank-1", "attempt-2/rank-2"}) {
    REQUIRE(Eventually(
        [&] { return ReadFile(dir + "/jobs/j/" + rank + "/worker.log") == "ready\n"; }, 5000ms));
  }
  std::map<int, pid_t> pids;
  for (const auto& r : s.Running()) pids[r.rank()] = static_cast<pid_t>(r.pid());
  v1::StopAttempt stop;
  stop.set_job_id("j");
  stop.set_attempt(1);
  stop.set_grace_ms(600);
  const auto start = std::chrono::steady_clock::now();
  s.StopAttempt(stop);
  std::map<int, std::pair<v1::WorkerExit, std::chrono::milliseconds>> exits;
  Eventually(
      [&] {
        s.Poll();
        Outgoing out = s.Collect(1 << 20);
        s.Acknowledge(out);
        for (const auto& e : out.exits) {
          exits[e.rank()] = {e, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - start)};
        }
        return exits.size() >= 2;
      },
      5000ms);
  REQUIRE(exits.size() == 2);
  REQUIRE(exits.at(1).first.signal() == SIGTERM);
  REQUIRE(exits.at(1).second < 600ms);
  REQUIRE(exits.at(0).first.signal() == SIGKILL);
  REQUIRE(exits.at(0).second >= 600ms);
  REQUIRE(exits.at(0).second < 3000ms);
  REQUIRE(exits.at(0).first.tail() == "ready\n");
  REQUIRE_FALSE(Alive(pids[0]));
  REQUIRE_FALSE(Alive(pids[1]));
  REQUIRE(s.running_count() == 1);
  REQUIRE(Alive(pids[2]));
  s.KillAll(1000);
  REQUIRE(s.running_count() == 0);
  REQUIRE_FALSE(Alive(pids[2]));
}

TEST_CASE("a rank of an attempt stopped before it started ends without a process") {
  const std::string dir = ScratchDir("sup-stopped-first");
  Supervisor s(Options(dir, "echo ran; exec /bin/sleep 30"));
  v1::StopAttempt stop;
  stop.set_job_id("j");
  stop.set_attempt(1);
  s.StopAttempt(stop);
  REQUIRE(s.Start(Assignment("j", 1, 0)));
  REQUIRE(s.running_count() == 0);
  Outgoing out = s.Collect(1 << 20);
  REQUIRE(out.exits.size() == 1);
  REQUIRE(out.exits[0].signal() == SIGTERM);
  REQUIRE_THAT(out.exits[0].tail(), Catch::Contains("stopped"));
  REQUIRE_FALSE(std::filesystem::exists(dir + "/jobs/j/attempt-1"));
  s.Acknowledge(out);
  REQUIRE_FALSE(s.Start(Assignment("j", 1, 0)));  // and only once
  // Attempt 0 stops every attempt of the job.
  stop.set_job_id("k");
  stop.set_attempt(0);
  s.StopAttempt(stop);
  REQUIRE(s.Start(Assignment("k", 5, 0)));
  REQUIRE(s.running_count() == 0);
  REQUIRE(s.Start(Assignment("other", 1, 0)));
  REQUIRE(s.running_count() == 1);
  s.KillAll(1000);
}

TEST_CASE("logs ship in offset order within the budget; an exit waits for its whole log") {
  const std::string dir = ScratchDir("sup-logs");
  // 3000 lines of 100 bytes, then exit 4.
  Supervisor s(Options(dir,
                       "i=0; while [ $i -lt 3000 ]; do printf '%099d\\n' $i; i=$((i+1)); done; "
                       "exit 4"));
  REQUIRE(s.Start(Assignment("j", 1, 0)));
  REQUIRE(Eventually([&] { return s.Poll() == 1; }, 10000ms));
  const std::string log = ReadFile(dir + "/jobs/j/attempt-1/rank-0/worker.log");
  REQUIRE(log.size() == 300000);

  std::string shipped;
  std::vector<v1::WorkerExit> exits;
  for (int round = 0; round < 10 && exits.empty(); ++round) {
    Outgoing out = s.Collect(128 << 10);
    REQUIRE(out.logs.size() == 1);
    REQUIRE(out.logs[0].offset() == static_cast<int64_t>(shipped.size()));
    REQUIRE(out.logs[0].data().size() <= (128u << 10));
    // Unacknowledged: the same bytes come again.
    Outgoing again = s.Collect(128 << 10);
    REQUIRE(again.logs[0].offset() == out.logs[0].offset());
    REQUIRE(again.logs[0].data() == out.logs[0].data());
    shipped += out.logs[0].data();
    // The exit rides only with the last bytes of its log.
    REQUIRE(out.exits.size() == (shipped.size() == log.size() ? 1u : 0u));
    exits = out.exits;
    s.Acknowledge(out);
  }
  REQUIRE(shipped == log);
  REQUIRE(exits.size() == 1);
  REQUIRE(exits[0].exit_code() == 4);
  REQUIRE(exits[0].tail() == log.substr(log.size() - 20 * 100));
  Outgoing rest = s.Collect(128 << 10);
  REQUIRE(rest.logs.empty());
  REQUIRE(rest.exits.empty());
}

TEST_CASE("two logs share the budget; ended workers' logs go first") {
  const std::string dir = ScratchDir("sup-share");
  Supervisor s(Options(dir,
                       "i=0; while [ $i -lt 2000 ]; do printf '%099d\\n' $i; i=$((i+1)); done; "
                       "if [ \"$RANK\" = 1 ]; then exec /bin/sleep 30; fi"));
  REQUIRE(s.Start(Assignment("j", 1, 0)));
  REQUIRE(s.Start(Assignment("j", 1, 1)));
  const std::string log1 = dir + "/jobs/j/attempt-1/rank-1/worker.log";
  REQUIRE(Eventually([&] { return s.Poll() == 1; }, 10000ms));  // rank 0 ended
  REQUIRE(Eventually([&] { return ReadFile(log1).size() == 200000; }, 10000ms));
  Outgoing out = s.Collect(256 << 10);
  REQUIRE(out.logs.size() == 2);
  REQUIRE(out.logs[0].rank() == 0);  // ended first
  REQUIRE(out.logs[1].rank() == 1);
  REQUIRE(out.logs[0].data().size() + out.logs[1].data().size() == (256u << 10));
  REQUIRE(out.logs[0].data().size() >= (128u << 10));
  REQUIRE(out.logs[1].data().size() >= 56u << 10);
  s.KillAll(1000);
}

}  // namespace
}  // namespace colossal::daemon
