// The rendezvous barrier: groups keyed by (job, attempt), one condition variable.
#include "runtime/coordinator/rendezvous.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::coordinator {
namespace {

// How often a waiting Join re-checks `cancelled()`.
constexpr std::chrono::milliseconds kPollInterval(100);

}  // namespace

absl::Status RendezvousTable::Refusal(const std::string& job_id, int attempt) const {
  if (shutdown_) return absl::UnavailableError("the coordinator is shutting down");
  if (closed_.count(job_id)) {
    return absl::AbortedError(absl::StrCat("rendezvous of ", job_id, ": the job has ended"));
  }
  auto it = current_.find(job_id);
  if (it != current_.end() && attempt < it->second) {
    return absl::AbortedError(absl::StrCat("rendezvous of ", job_id, " attempt ", attempt,
                                           ": superseded by attempt ", it->second));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RendezvousTable::Join(
    const std::string& job_id, int attempt, int rank, int world_size, std::string endpoint,
    std::chrono::system_clock::time_point deadline, const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  if (absl::Status refusal = Refusal(job_id, attempt); !refusal.ok()) return refusal;
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous of ", job_id, ": rank ", rank,
                                                   " is outside [0, ", world_size, ")"));
  }
  const auto key = std::make_pair(job_id, attempt);
  Group& group = groups_[key];
  if (group.world_size == 0) group.world_size = world_size;
  if (group.world_size != world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous of ", job_id, " attempt ", attempt, ": world_size ", world_size,
                     ", but ranks so far joined with ", group.world_size));
  }
  group.endpoints[rank] = std::move(endpoint);
  changed_.notify_all();
  while (true) {
    if (absl::Status refusal = Refusal(job_id, attempt); !refusal.ok()) return refusal;
    auto it = groups_.find(key);
    if (it == groups_.end()) {
      return absl::AbortedError(
          absl::StrCat("rendezvous of ", job_id, " attempt ", attempt, " ended"));
    }
    if (static_cast<int>(it->second.endpoints.size()) == it->second.world_size) {
      std::vector<std::string> out;
      out.reserve(it->second.world_size);
      for (const auto& [r, blob] : it->second.endpoints) out.push_back(blob);
      return out;
    }
    const auto now = std::chrono::system_clock::now();
    const bool gave_up = cancelled && cancelled();
    if (now >= deadline || gave_up) {
      std::vector<int> missing;
      for (int r = 0; r < it->second.world_size; ++r) {
        if (!it->second.endpoints.count(r)) missing.push_back(r);
      }
      const std::string status = absl::StrCat(
          "rendezvous of ", job_id, " attempt ", attempt, ": ", it->second.endpoints.size(), " of ",
          it->second.world_size, " ranks joined; missing ranks ", absl::StrJoin(missing, ", "));
      // A rank that gave up is no longer joined: later joiners must not get its blob.
      it->second.endpoints.erase(rank);
      if (gave_up) return absl::CancelledError(absl::StrCat(status, " (the caller cancelled)"));
      return absl::DeadlineExceededError(absl::StrCat(status, " by the deadline"));
    }
    changed_.wait_until(lock, std::min(deadline, now + kPollInterval));
  }
}

void RendezvousTable::Open(const std::string& job_id, int attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  int& current = current_[job_id];
  current = std::max(current, attempt);
  for (auto it = groups_.lower_bound({job_id, 0});
       it != groups_.end() && it->first.first == job_id;) {
    it = it->first.second < current ? groups_.erase(it) : std::next(it);
  }
  changed_.notify_all();
}

void RendezvousTable::Close(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  closed_.insert(job_id);
  current_.erase(job_id);
  for (auto it = groups_.lower_bound({job_id, 0});
       it != groups_.end() && it->first.first == job_id;) {
    it = groups_.erase(it);
  }
  changed_.notify_all();
}

void RendezvousTable::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  changed_.notify_all();
}

}  // namespace colossal::coordinator
