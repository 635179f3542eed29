// The workers of one node daemon: starts each Assignment as a child process (spec file,
// log file, torchrun-style environment), stops attempts (SIGTERM, grace, SIGKILL),
// reaps exits, and keeps what the coordinator has not acknowledged yet: queued exits and
// the unshipped bytes of every log. Does not own the RPCs (node_daemon.h does).
//
// Not thread-safe: one thread (the daemon's loop) calls every method. Workers get
// SIGKILL as their parent-death signal from the thread that starts them, so that thread
// must outlive them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"

namespace colossal::daemon {

struct SupervisorOptions {
  std::string state_dir;                    // jobs/<job>/attempt-<a>/rank-<r>/ go here
  std::vector<std::string> worker_command;  // argv prefix; "--spec PATH" is appended
  std::string coordinator;                  // COLOSSAL_COORDINATOR of every worker
  std::string token_file;                   // COLOSSAL_TOKEN_FILE (absolute) when set
  std::string tls_ca;                       // COLOSSAL_TLS_CA (absolute) when set
};

// One heartbeat's worth of reports. Exits are included only once every byte of that
// rank's log has been shipped (in this report or an earlier acknowledged one), so a
// coordinator that sees an exit has that rank's whole log.
struct Outgoing {
  std::vector<v1::WorkerExit> exits;
  std::vector<v1::LogChunk> logs;
  std::vector<uint64_t> exit_ids;  // internal: which queued exits these are
};

class Supervisor {
 public:
  explicit Supervisor(SupervisorOptions options);
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts the worker of `assignment`. Ignored (returns false) when this daemon runs or
  // has run the same (job, attempt, rank): attempts are never re-run. A start that fails
  // (bad job id, unwritable state dir, exec failure) is queued as exit code 127 with the
  // reason in its tail (and appended to its log). A rank of an attempt already stopped
  // here is not started: it is queued as ended by SIGTERM, as if it had been stopped.
  // Either way every assignment accepted here ends in exactly one exit.
  bool Start(const v1::Assignment& assignment);

  // SIGTERMs the process group of every worker of (job, attempt) (attempt <= 0: every
  // attempt of the job) and SIGKILLs those still alive grace_ms later (see Poll). The
  // attempt is remembered: later assignments of it are not started.
  void StopAttempt(const v1::StopAttempt& stop);

  // Reaps exited workers (queueing their exits) and SIGKILLs workers whose grace has run
  // out. Returns the number of exits queued by this call. Never blocks.
  int Poll();

  // SIGTERMs every worker, SIGKILLs the survivors after grace_ms, and reaps them all
  // (bounded: a process stuck in the kernel is given up on after 5 s more, and logged).
  void KillAll(int64_t grace_ms);

  std::vector<v1::RunningWorker> Running() const;
  size_t running_count() const { return workers_.size(); }
  size_t queued_exits() const { return exits_.size(); }

  // The next report: every sendable queued exit and at most `log_budget` bytes of logs.
  // Each log with new bytes gets an equal share of the budget first, then the rest goes
  // in order: exited workers' logs (their exits wait on them), then running ones in
  // start order. One chunk per log, from its first unacknowledged byte. Nothing is
  // forgotten until Acknowledge; collecting again without it yields the same chunks.
  Outgoing Collect(size_t log_budget);
  // The coordinator answered the heartbeat that carried `sent`: drop its exits and
  // advance its logs' shipped offsets.
  void Acknowledge(const Outgoing& sent);

 private:
  using Key = std::tuple<std::string, int, int>;  // job, attempt, rank
  using Clock = std::chrono::steady_clock;
  struct Worker {
    Key key;
    std::optional<Clock::time_point> kill_at;  // SIGKILL when still alive then
  };
  struct Log {
    std::string path;
    uint64_t seq = 0;         // start order
    int64_t shipped = 0;      // bytes acknowledged by the coordinator
    int64_t final_size = -1;  // size when the worker ended; -1 while it runs
  };
  struct QueuedExit {
    uint64_t id = 0;
    Key key;
    v1::WorkerExit exit;
  };

  std::string RankDir(const Key& key) const;
  void QueueExit(const Key& key, int exit_code, int signal, const std::string& tail);
  void FailStart(const Key& key, const std::string& log_path, const std::string& message);
  void OnExit(std::map<pid_t, Worker>::iterator it, int exit_code, int signal);

  SupervisorOptions options_;
  std::map<pid_t, Worker> workers_;  // running, by pid
  std::set<Key> seen_;               // every (job, attempt, rank) ever started here
  std::set<std::pair<std::string, int>> stopped_;  // (job, attempt) stopped; 0: all attempts
  std::map<Key, Log> logs_;          // logs with bytes or an exit not yet acknowledged
  std::deque<QueuedExit> exits_;
  uint64_t next_seq_ = 1;
  uint64_t next_exit_id_ = 1;
};

}  // namespace colossal::daemon
