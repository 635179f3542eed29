// LocalGroup: N ranks as threads of one process, for fast tests of everything built on
// the Communicator contract (data parallelism, ZeRO) without processes or a network.
// Collectives execute when every member has issued them (the call blocks until then, so
// the returned Work is already done); sums are taken in rank order, so every rank gets
// bit-identical results. A member that does not arrive within the timeout makes the
// others fail with DEADLINE_EXCEEDED naming the missing ranks. Thread-safe by design
// (one thread per rank). Send copies the bytes into the destination's mailbox at once
// (complete on return); Recv completes when a message of its (source, tag) is there,
// taking the oldest, so sends and receives pair in issue order per (source, tag).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <tuple>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel/comm/communicator.h"

namespace colossal::parallel {

class LocalGroup : public std::enable_shared_from_this<LocalGroup> {
 public:
  static std::shared_ptr<LocalGroup> Create(int size,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(30),
                                            std::vector<int> global_ranks = {});
  // The communicator of member `rank` (call once per rank, from that rank's thread).
  std::unique_ptr<Communicator> Member(int rank);

  int size() const { return size_; }

  // Internal: one collective step. Every member posts its input buffer; returns when all
  // have (or the timeout passes), with every member's input by rank in `all`.
  absl::Status Exchange(int rank, const void* send, std::vector<const void*>* all);
  std::shared_ptr<LocalGroup> SubGroup(const std::vector<int>& members_local);
  // Internal: point to point.
  void Post(int from, int to, int tag, const void* buf, int64_t bytes);
  // Takes the oldest message (from, to, tag) into `buf`; waits up to the timeout when
  // `wait`, else reports Unavailable when there is none yet.
  absl::Status Take(int from, int to, int tag, void* buf, int64_t bytes, bool wait);
  const std::vector<int>& global_ranks() const { return global_ranks_; }
  void Abort(const absl::Status& status);

 private:
  LocalGroup() = default;
  int size_ = 0;
  std::chrono::milliseconds timeout_{};
  std::vector<int> global_ranks_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t generation_ = 0;
  int arrived_ = 0;
  std::vector<const void*> posts_;
  std::vector<const void*> snapshot_;
  std::vector<bool> present_;
  absl::Status aborted_;
  std::map<std::vector<int>, std::shared_ptr<LocalGroup>> subgroups_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<char>>> mail_;  // (from, to, tag)
};

}  // namespace colossal::parallel
