// LogStore: the rank logs that daemons ship up in heartbeats, as files under
// <root>/<job>/attempt-<a>/rank-<r>.log (root is state_dir/logs). It owns the layout,
// idempotent writes and change notification for followers; it does not check that a
// chunk belongs to a known job (the scheduler does, before calling Write).
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace colossal::coordinator {

class LogStore {
 public:
  explicit LogStore(std::string root) : root_(std::move(root)) {}

  // Writes chunk.data at chunk.offset of its rank's file, creating it. Writes are
  // positional, so a resent chunk (the same bytes at the same offset) changes nothing.
  absl::Status Write(const v1::LogChunk& chunk);

  struct File {
    int attempt = 0;
    int rank = 0;
    std::string path;
    int64_t size = 0;
  };
  // The job's log files of `rank` (-1: every rank), ordered by attempt, then rank.
  std::vector<File> List(const std::string& job_id, int rank) const;
  // Up to `max_bytes` of `path` from `offset` (fewer at the end of the file).
  absl::StatusOr<std::string> Read(const std::string& path, int64_t offset,
                                   int64_t max_bytes) const;
  // The last `max_bytes` of a rank's log of an attempt ("" when there is none).
  std::string Tail(const std::string& job_id, int attempt, int rank, int64_t max_bytes) const;

  // A counter bumped by every Write: followers wait for it to move.
  uint64_t generation() const;
  // Returns when the counter differs from `seen`, after `timeout`, or after Shutdown().
  uint64_t WaitForWrite(uint64_t seen, std::chrono::milliseconds timeout);
  void Shutdown();

 private:
  std::string PathOf(const std::string& job_id, int attempt, int rank) const;

  const std::string root_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;
  bool shutdown_ = false;
};

}  // namespace colossal::coordinator
