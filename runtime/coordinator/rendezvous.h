// RendezvousTable: the barrier behind Rendezvous.Join. The ranks of one (job, attempt)
// each deposit an opaque endpoint blob and wait until every rank has one; all then get
// every blob, by rank. A rank joining twice replaces its blob. Opening attempt N of a
// job supersedes attempts below N (their waiters, and later joins, get ABORTED);
// closing a job (terminal state) aborts all of its attempts. It owns no job state: the
// scheduler checks job ids, ranks and world sizes before Join. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::coordinator {

class RendezvousTable {
 public:
  // Waits until every rank of (job_id, attempt) has joined and returns all blobs.
  // DEADLINE_EXCEEDED at `deadline`, CANCELLED when `cancelled()` turns true (polled),
  // ABORTED when the attempt is superseded or the job closed, UNAVAILABLE on Shutdown,
  // INVALID_ARGUMENT when world_size differs from the first joiner's.
  absl::StatusOr<std::vector<std::string>> Join(const std::string& job_id, int attempt, int rank,
                                                int world_size, std::string endpoint,
                                                std::chrono::system_clock::time_point deadline,
                                                const std::function<bool()>& cancelled);

  // Attempt `attempt` is now the job's current one: lower attempts are superseded.
  void Open(const std::string& job_id, int attempt);
  // The job ended: every attempt of it is aborted.
  void Close(const std::string& job_id);
  // Ends every wait (UNAVAILABLE) and refuses later joins.
  void Shutdown();

 private:
  struct Group {
    int world_size = 0;
    std::map<int, std::string> endpoints;  // by rank
  };
  // Why joins of (job, attempt) cannot proceed, or OK. Caller holds mu_.
  absl::Status Refusal(const std::string& job_id, int attempt) const;

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::pair<std::string, int>, Group> groups_;
  std::map<std::string, int> current_;  // job → lowest attempt still valid
  std::set<std::string> closed_;
  bool shutdown_ = false;
};

}  // namespace colossal::coordinator
