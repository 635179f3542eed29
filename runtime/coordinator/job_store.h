// JobStore: the coordinator's durable state in SQLite (state_dir/state.db, WAL mode,
// synchronous=FULL): jobs, attempts (placement and per-rank state), events (one row
// per state change) and nodes. It owns the schema and the SQL; it does not own
// scheduling decisions (scheduler.h) or log bytes (log_store.h).
//
// Writes are ordered and group-committed: Put*/Add* only append an operation to a
// queue (cheap; call them under the caller's own lock, so the queue order is the order
// of the caller's decisions), and Sync() commits everything queued so far in one
// transaction. Many threads calling Sync() at once share one fsync. Thread-safe.
//
// Tables (for `sqlite3 state.db` and tools):
//   jobs(id, seq, name, state, attempt, step, total_steps, loss, val_loss, message,
//        submitted_ms, started_ms, finished_ms, restarts, world_size, run_dir, spec_yaml,
//        exit_code)
//   attempts(job_id, attempt, master_addr, master_port, placement, scheduled_ms, ended_ms)
//        placement: one line per rank, "rank\tnode_id\tlocal_rank\tpid\tstate"
//   events(id, job_id, unix_ms, attempt, state, message)
//   nodes(id, hostname, address, slots, cpu_cores, devices, version, registered_ms,
//         last_seen_ms, alive)   devices: one line per device, "cuda:0 NVIDIA H100"
// `state` columns hold the JobState names of job.proto ("RUNNING").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

struct sqlite3;

namespace colossal::coordinator {

// One attempt of a job: where its ranks run and what became of them.
struct AttemptRow {
  std::string job_id;
  int attempt = 0;
  std::string master_addr;
  int master_port = 0;
  std::vector<v1::RankPlacement> ranks;  // indexed by rank
  int64_t scheduled_ms = 0;
  int64_t ended_ms = 0;  // 0 while the attempt holds ranks
};

struct NodeRow {
  std::string id;
  std::string hostname;
  std::string address;
  int slots = 0;
  int cpu_cores = 0;
  std::vector<std::string> devices;  // "cpu:0", "cuda:0 NVIDIA H100 80GB", ...
  std::string version;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  bool alive = false;
};

// A job as stored: the Job message (without `ranks`) and its current attempt, if any.
struct StoredJob {
  int64_t seq = 0;
  v1::Job job;
  std::optional<AttemptRow> attempt;
};

struct StoreSnapshot {
  std::vector<StoredJob> jobs;  // by seq
  std::vector<NodeRow> nodes;   // by id
};

class JobStore {
 public:
  // Opens (creating if absent) the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~JobStore();  // commits what is queued, then closes
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Everything stored, for a coordinator starting on an existing state dir.
  absl::StatusOr<StoreSnapshot> Load();

  // Queued writes (see the file comment). `job.ranks` is not stored by PutJob.
  void PutJob(int64_t seq, const v1::Job& job);
  void PutProgress(const v1::Job& job);  // step, total_steps, loss, val_loss only
  void PutAttempt(const AttemptRow& attempt);
  void AddEvent(const std::string& job_id, int64_t unix_ms, int attempt, v1::JobState state,
                const std::string& message);
  void PutNode(const NodeRow& node);

  // Commits every write queued before this call. An error is also logged; the failed
  // writes are dropped (the in-memory state stays authoritative until the next write of
  // the same rows).
  absl::Status Sync();
  // Whether writes are queued and not yet committed.
  bool HasPending() const;

 private:
  using Op = std::function<absl::Status(sqlite3*)>;
  explicit JobStore(sqlite3* db) : db_(db) {}
  void Enqueue(Op op);

  sqlite3* db_;
  mutable std::mutex queue_mu_;  // guards pending_, enqueued_
  std::vector<Op> pending_;
  uint64_t enqueued_ = 0;
  std::mutex commit_mu_;  // one committer at a time; guards committed_ and db_ use
  uint64_t committed_ = 0;
};

}  // namespace colossal::coordinator
