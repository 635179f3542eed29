// Scheduler: the coordinator's in-memory truth: jobs, nodes, the FIFO queue and the job
// state machine (PENDING → SCHEDULED → RUNNING → SUCCEEDED | FAILED | CANCELLED, with
// RESTARTING), placement of ranks, the restart policy, node leases and re-attachment
// after a coordinator restart. The gRPC services (services.h) are
// thin shells over it. It owns no I/O format: SQLite lives in JobStore, log files in
// LogStore, the rendezvous barrier in RendezvousTable, watch streams in EventHub.
//
// Thread safety: every public method is thread-safe. One mutex guards all state;
// store writes are queued under it (so they land in decision order) and committed
// after it is released (JobStore::Sync), before the RPC that caused them answers.
//
// Rank life in an attempt: "assigned" (queued for its node's next heartbeat answer,
// then delivered) → "running" (its daemon reports the process) → done: "exited(C)",
// "killed(S)", "lost" (its node's lease ran out, or its daemon stopped mentioning it for
// kVanishHeartbeats heartbeats), "stopped" (never delivered before the attempt ended).
// A heartbeat mentions a rank by listing it running, by its exit, or by bytes of its log
// (a daemon holds an exit back until the rank's log is shipped). A delivered assignment
// that its daemon has mentioned in none of kResendHeartbeats heartbeats is delivered
// again; daemons ignore a repeated (job, attempt, rank).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "runtime/config/job_spec.h"
#include "runtime/coordinator/event_hub.h"
#include "runtime/coordinator/job_store.h"
#include "runtime/coordinator/log_store.h"
#include "runtime/coordinator/placement.h"
#include "runtime/coordinator/rendezvous.h"

namespace colossal::coordinator {

struct SchedulerOptions {
  int64_t heartbeat_ms = 500;
  int64_t lease_ms = 10000;
  int64_t stop_grace_ms = 10000;
};

// Heartbeats in which a daemon does not mention a rank before that rank counts as gone
// (running), or its assignment is delivered again (assigned).
inline constexpr int kVanishHeartbeats = 3;
inline constexpr int kResendHeartbeats = 10;
// Bytes of a rank's log quoted in a failed job's message when the exit carries none.
inline constexpr int64_t kTailBytes = 2048;

// "j-000001" for sequence number 1; JobSeq inverts it (-1 for anything else).
std::string JobId(int64_t seq);
int64_t JobSeq(const std::string& job_id);
bool IsTerminal(v1::JobState state);
// SCHEDULED or RUNNING: the attempt is live and not being stopped.
bool IsActive(v1::JobState state);

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, JobStore* store, LogStore* logs,
            RendezvousTable* rendezvous, EventHub* events);

  // Loads jobs and nodes from the store (once, before serving). Active jobs wait for
  // their nodes to re-register; a node that does not within lease_ms is lost.
  absl::Status Restore();

  // JobService.
  absl::StatusOr<v1::SubmitJobResponse> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const;
  v1::ListJobsResponse ListJobs(const v1::ListJobsRequest& request) const;
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  v1::ListNodesResponse ListNodes() const;
  // The job's current state as an event, and a subscription to every later event,
  // taken atomically. Caller unsubscribes from `events` when done.
  absl::StatusOr<std::shared_ptr<Subscription>> Watch(const std::string& job_id,
                                                      v1::JobEvent* current);
  // For StreamLogs: whether the job is terminal with every rank finished (no more log
  // bytes will be produced), and since when (steady clock, ms).
  struct LogState {
    bool settled = false;
    int64_t settled_ms = 0;
  };
  absl::StatusOr<LogState> GetLogState(const std::string& job_id) const;

  // NodeService. `peer_host` stands in for an empty request.address.
  absl::StatusOr<v1::RegisterNodeResponse> Register(const v1::RegisterNodeRequest& request,
                                                    const std::string& peer_host);
  v1::HeartbeatResponse Heartbeat(const v1::HeartbeatRequest& request);

  // Rendezvous: OK when the joiner belongs to the job's current attempt; NOT_FOUND,
  // ABORTED (superseded attempt, ended job), FAILED_PRECONDITION (attempt not started)
  // or INVALID_ARGUMENT (rank or world size) otherwise.
  absl::Status CheckJoin(const v1::JoinRequest& request) const;

  // WorkerService: rank 0's reports of the current attempt update the job and its
  // watchers; other ranks' and stale attempts' reports are accepted and ignored.
  absl::Status ReportProgress(const v1::ProgressReport& report);

  // Housekeeping, called every ~100 ms: node leases, throttled progress writes.
  void Tick();
  // Writes progress not yet saved (at shutdown).
  void SaveAll();

  int64_t heartbeat_ms() const { return options_.heartbeat_ms; }

 private:
  enum class RankPhase { kAssigned, kRunning, kDone };
  // kCannotStart: exit 126/127, the daemon could not exec the worker (or its shell could
  // not find it): another attempt would fail the same way, so it is not restarted.
  enum class Outcome { kSuccess, kBadInput, kCannotStart, kFailure };
  struct RankSlot {
    v1::RankPlacement placement;
    RankPhase phase = RankPhase::kAssigned;
    bool delivered = false;  // handed to the daemon in a heartbeat answer
    int missed = 0;          // consecutive heartbeats of its node that did not mention it
  };
  struct JobRecord {
    int64_t seq = 0;
    v1::Job job;  // `ranks` left empty: `ranks` below is the truth
    config::JobSpec spec;  // default for a terminal job restored from the store (unused)
    std::vector<RankSlot> ranks;  // the current attempt's
    std::string master_addr;
    int master_port = 0;
    int64_t scheduled_ms = 0;
    int64_t ended_ms = 0;
    int64_t progress_saved_ms = 0;
    bool progress_dirty = false;
    int64_t settled_ms = -1;  // steady ms since terminal with no rank outstanding

    // Whether a rank of the current attempt has not finished.
    bool HasOutstandingRanks() const {
      return std::any_of(ranks.begin(), ranks.end(),
                         [](const RankSlot& s) { return s.phase != RankPhase::kDone; });
    }
  };
  struct NodeRecord {
    NodeRow row;
    bool registered = false;            // registered with this process and not lost since
    int64_t last_seen_ms = 0;           // steady clock
    int64_t saved_ms = 0;               // when last_seen was last written to the store
    std::vector<v1::Assignment> start;  // undelivered
    std::vector<v1::StopAttempt> stop;  // undelivered
    std::map<std::pair<std::string, int>, int64_t> stop_sent_ms;  // (job, attempt) → steady ms
  };
  using WorkerKey = std::tuple<std::string, int, int>;  // job, attempt, rank
  static constexpr int64_t kProgressSaveMs = 1000;

  // Everything below requires mu_.
  JobRecord* FindLocked(const std::string& job_id) const;
  v1::Job Snapshot(const JobRecord& record) const;
  void SetState(JobRecord& record, v1::JobState state, const std::string& message);
  void SaveAttempt(JobRecord& record);
  // Queues the job's progress when it changed and kProgressSaveMs passed since it was
  // last written (reports arrive every step; the store need not see each one).
  void SaveProgressIfDue(JobRecord& record, int64_t unix_now);
  void SaveNode(NodeRecord& node);
  // Ranks of unfinished attempts per node id.
  std::map<std::string, int> SlotsUsed() const;
  std::vector<NodeCapacity> LiveNodes() const;
  void Schedule();
  void PlaceAttempt(JobRecord& record, const std::vector<NodeCapacity>& live,
                    const std::vector<size_t>& chosen);
  v1::Assignment MakeAssignment(const JobRecord& record, int rank) const;
  // How a rank of the current attempt ended.
  struct RankEnd {
    std::string state;  // its RankPlacement state: "exited(1)", "killed(9)", "lost", ...
    Outcome outcome = Outcome::kFailure;
    std::string why;    // "rank 1 on node n-000001 exited with code 1"
    std::string tail;   // its last log lines, quoted in a FAILED message
    int exit_code = 0;  // Job.exit_code if this fails the job: the code, or 128 + signal
  };
  // Records the end and applies the restart policy.
  void RankDone(JobRecord& record, int rank, const RankEnd& end);
  void CheckRunning(JobRecord& record);
  // Ends the attempt's outstanding ranks: undelivered ones at once ("stopped"), the
  // others by a StopAttempt to their nodes.
  void StopAttemptRanks(JobRecord& record);
  void DropQueuedStart(const JobRecord& record, int rank);
  void EnsureStop(NodeRecord& node, const std::string& job_id, int attempt);
  void UpdateSettled(JobRecord& record);
  void ProcessRunning(NodeRecord& node,
                      const google::protobuf::RepeatedPtrField<v1::RunningWorker>& running);
  void ProcessExit(const std::string& node_id, const v1::WorkerExit& exit);
  void ProcessMissing(NodeRecord& node, const std::set<WorkerKey>& mentioned);
  void NodeLost(NodeRecord& node, const std::string& why);
  bool ValidLogChunk(const std::string& node_id, const v1::LogChunk& chunk) const;

  const SchedulerOptions options_;
  JobStore* const store_;
  LogStore* const logs_;
  RendezvousTable* const rendezvous_;
  EventHub* const events_;

  mutable std::mutex mu_;
  std::map<int64_t, std::unique_ptr<JobRecord>> jobs_;  // by seq
  std::set<int64_t> live_;  // jobs not terminal, or terminal with ranks outstanding
  std::map<std::string, NodeRecord> nodes_;  // by id
  int64_t next_seq_ = 1;
  int64_t next_node_ = 1;
};

}  // namespace colossal::coordinator
