// Nodes: registration, heartbeats (running workers, exits, logs, assignments, stops),
// re-attachment, vanished ranks, leases, and the periodic housekeeping.
#include <string.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/logging.h"
#include "runtime/coordinator/scheduler.h"
#include "runtime/coordinator/time.h"
#include "runtime/rpc/rpc.h"

namespace colossal::coordinator {
namespace {

// Entries of NodeRecord::stop_sent_ms older than this are forgotten.
constexpr int64_t kStopMemoryMs = 10 * 60 * 1000;

std::string DeviceText(const v1::Device& d) {
  std::string text = absl::StrCat(d.kind(), ":", d.index());
  if (!d.name().empty()) absl::StrAppend(&text, " ", d.name());
  if (d.memory_bytes() > 0) {
    absl::StrAppend(&text, absl::StrFormat(" (%.1f GiB)", d.memory_bytes() / double(1LL << 30)));
  }
  return text;
}

absl::Status CheckNodeId(const std::string& id) {
  const bool printable =
      std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 127; });
  if (id.size() > 128 || !printable) {
    return absl::InvalidArgumentError(
        absl::StrCat("node_id '", id, "' must be at most 128 printable characters without spaces"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::RegisterNodeResponse> Scheduler::Register(const v1::RegisterNodeRequest& request,
                                                             const std::string& peer_host) {
  if (request.slots() < 1) {
    return absl::InvalidArgumentError(absl::StrCat("slots must be >= 1, got ", request.slots()));
  }
  if (absl::Status status = CheckNodeId(request.node_id()); !status.ok()) return status;
  v1::RegisterNodeResponse response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::string id = request.node_id();
    while (id.empty() || (request.node_id().empty() && nodes_.count(id))) {
      id = absl::StrFormat("n-%06d", next_node_++);
    }
    NodeRecord& node = nodes_[id];
    const bool again = node.registered;
    if (again && node.row.hostname != request.hostname()) {
      LOG_WARN("node {}: registered by host {} while {} holds that id; check the daemons' node ids",
               id, request.hostname(), node.row.hostname);
    }
    NodeRow& row = node.row;
    row.id = id;
    row.hostname = request.hostname();
    row.address = !request.address().empty() ? request.address()
                  : !peer_host.empty()       ? peer_host
                                             : request.hostname();
    row.slots = request.slots();
    row.cpu_cores = request.cpu_cores();
    row.devices.clear();
    for (const v1::Device& d : request.devices()) row.devices.push_back(DeviceText(d));
    row.version = request.version();
    row.registered_ms = row.last_seen_ms = UnixMs();
    row.alive = true;
    node.registered = true;
    node.last_seen_ms = SteadyMs();
    SaveNode(node);
    LOG_INFO("node {}: {} ({} at {}), {} slots, {} cores, {} devices, {} running workers", id,
             again ? "re-registered" : "registered", row.hostname, row.address, row.slots,
             row.cpu_cores, row.devices.size(), request.running_size());
    ProcessRunning(node, request.running());
    Schedule();
    response.set_node_id(id);
    response.set_heartbeat_ms(options_.heartbeat_ms);
    response.set_lease_ms(options_.lease_ms);
  }
  if (absl::Status status = store_->Sync(); !status.ok()) return status;
  return response;
}

v1::HeartbeatResponse Scheduler::Heartbeat(const v1::HeartbeatRequest& request) {
  const std::string& node_id = request.node_id();
  // Log bytes first (outside the lock: file I/O), so a failed rank's tail includes them.
  std::vector<const v1::LogChunk*> chunks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::LogChunk& chunk : request.logs()) {
      if (ValidLogChunk(node_id, chunk)) chunks.push_back(&chunk);
    }
  }
  for (const v1::LogChunk* chunk : chunks) {
    if (absl::Status status = logs_->Write(*chunk); !status.ok()) {
      LOG_ERROR("job {}: storing a log chunk of rank {}: {}", chunk->job_id(), chunk->rank(),
                status.message());
    }
  }

  v1::HeartbeatResponse response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(node_id);
    NodeRecord* node = it != nodes_.end() && it->second.registered ? &it->second : nullptr;
    if (node != nullptr) {
      node->last_seen_ms = SteadyMs();
      node->row.last_seen_ms = UnixMs();
      if (node->row.last_seen_ms - node->saved_ms >= 1000) SaveNode(*node);
      ProcessRunning(*node, request.running());
    }
    // Exits count even from a node that must re-register: each is checked against the
    // rank's placement, and the daemon stops resending it once answered.
    for (const v1::WorkerExit& exit : request.exits()) ProcessExit(node_id, exit);
    if (node != nullptr) {
      std::set<WorkerKey> mentioned;
      for (const v1::RunningWorker& w : request.running())
        mentioned.insert({w.job_id(), w.attempt(), w.rank()});
      for (const v1::WorkerExit& e : request.exits())
        mentioned.insert({e.job_id(), e.attempt(), e.rank()});
      // A daemon holds an exit back until the rank's log is shipped; meanwhile the rank
      // shows only through its log bytes.
      for (const v1::LogChunk& c : request.logs())
        mentioned.insert({c.job_id(), c.attempt(), c.rank()});
      ProcessMissing(*node, mentioned);
    }
    Schedule();
    if (node == nullptr) {
      response.set_reregister(true);
    } else {
      for (v1::Assignment& a : node->start) {
        JobRecord* rec = FindLocked(a.job_id());
        if (rec != nullptr && a.attempt() == rec->job.attempt()) {
          rec->ranks[a.rank()].delivered = true;
          rec->ranks[a.rank()].missed = 0;
        }
        *response.add_start() = std::move(a);
      }
      node->start.clear();
      for (v1::StopAttempt& s : node->stop) *response.add_stop() = std::move(s);
      node->stop.clear();
    }
  }
  if (store_->HasPending()) {
    if (absl::Status status = store_->Sync(); !status.ok()) {
      LOG_ERROR("node {}: heartbeat state not stored: {}", node_id, status.message());
    }
  }
  return response;
}

void Scheduler::Tick() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = SteadyMs();
    bool lost = false;
    for (auto& [id, node] : nodes_) {
      const int64_t silent = now - node.last_seen_ms;
      if (node.row.alive && silent > options_.lease_ms) {
        NodeLost(node, absl::StrCat("no heartbeat for ", silent, " ms (lease ", options_.lease_ms,
                                    " ms)"));
        lost = true;
      }
      for (auto s = node.stop_sent_ms.begin(); s != node.stop_sent_ms.end();) {
        s = now - s->second > kStopMemoryMs ? node.stop_sent_ms.erase(s) : std::next(s);
      }
    }
    const int64_t unix_now = UnixMs();
    for (int64_t seq : live_) SaveProgressIfDue(*jobs_.at(seq), unix_now);
    if (lost) Schedule();
  }
  if (store_->HasPending()) store_->Sync().IgnoreError();  // Sync logs its errors
}

void Scheduler::SaveAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [seq, rec] : jobs_) {
      if (rec->progress_dirty) store_->PutProgress(rec->job);
      rec->progress_dirty = false;
    }
    for (auto& [id, node] : nodes_) {
      if (node.registered) SaveNode(node);
    }
  }
  store_->Sync().IgnoreError();
}

v1::ListNodesResponse Scheduler::ListNodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> used = SlotsUsed();
  v1::ListNodesResponse response;
  for (const auto& [id, node] : nodes_) {
    v1::NodeInfo* info = response.add_nodes();
    info->set_node_id(id);
    info->set_hostname(node.row.hostname);
    info->set_address(node.row.address);
    info->set_slots(node.row.slots);
    info->set_slots_used(used[id]);
    info->set_cpu_cores(node.row.cpu_cores);
    for (const std::string& d : node.row.devices) info->add_devices(d);
    info->set_last_seen_unix_ms(node.row.last_seen_ms);
    info->set_alive(node.row.alive);
  }
  return response;
}

// ---------------------------------------------------------------------------------
// mu_ held below

void Scheduler::SaveNode(NodeRecord& node) {
  store_->PutNode(node.row);
  node.saved_ms = UnixMs();
}

bool Scheduler::ValidLogChunk(const std::string& node_id, const v1::LogChunk& chunk) const {
  const JobRecord* rec = FindLocked(chunk.job_id());  // also keeps paths well-formed
  if (rec == nullptr || chunk.attempt() < 1 || chunk.attempt() > rec->job.attempt() ||
      chunk.rank() < 0 || chunk.rank() >= static_cast<int>(rec->ranks.size()) ||
      chunk.offset() < 0) {
    return false;
  }
  return chunk.attempt() < rec->job.attempt() ||
         rec->ranks[chunk.rank()].placement.node_id() == node_id;
}

void Scheduler::ProcessRunning(
    NodeRecord& node, const google::protobuf::RepeatedPtrField<v1::RunningWorker>& running) {
  std::set<JobRecord*> touched;
  for (const v1::RunningWorker& w : running) {
    JobRecord* rec = FindLocked(w.job_id());
    const bool ours = rec != nullptr && w.attempt() == rec->job.attempt() && w.rank() >= 0 &&
                      w.rank() < static_cast<int>(rec->ranks.size()) &&
                      rec->ranks[w.rank()].placement.node_id() == node.row.id;
    if (!ours || rec->ranks[w.rank()].phase == RankPhase::kDone) {
      // Not a rank of a current attempt here (superseded, cancelled, lost, unknown).
      EnsureStop(node, w.job_id(), w.attempt());
      continue;
    }
    RankSlot& slot = rec->ranks[w.rank()];
    slot.missed = 0;
    slot.delivered = true;
    if (slot.phase == RankPhase::kAssigned || slot.placement.pid() != w.pid()) {
      if (slot.phase == RankPhase::kAssigned) {
        LOG_INFO("job {}: rank {} running on node {} (pid {})", rec->job.id(), w.rank(),
                 node.row.id, w.pid());
      }
      slot.phase = RankPhase::kRunning;
      slot.placement.set_state("running");
      slot.placement.set_pid(w.pid());
      if (rec->job.started_unix_ms() == 0) rec->job.set_started_unix_ms(UnixMs());
      touched.insert(rec);
    }
    if (!IsActive(rec->job.state())) EnsureStop(node, w.job_id(), w.attempt());
  }
  for (JobRecord* rec : touched) {
    SaveAttempt(*rec);
    CheckRunning(*rec);
  }
}

void Scheduler::ProcessExit(const std::string& node_id, const v1::WorkerExit& exit) {
  JobRecord* rec = FindLocked(exit.job_id());
  if (rec == nullptr || exit.attempt() != rec->job.attempt() || exit.rank() < 0 ||
      exit.rank() >= static_cast<int>(rec->ranks.size())) {
    return;
  }
  RankSlot& slot = rec->ranks[exit.rank()];
  if (slot.placement.node_id() != node_id || slot.phase == RankPhase::kDone) return;  // repeated
  if (rec->job.started_unix_ms() == 0) rec->job.set_started_unix_ms(UnixMs());
  const std::string where = absl::StrCat("rank ", exit.rank(), " on node ", node_id);
  RankEnd end;
  if (exit.signal() != 0) {
    end.state = absl::StrCat("killed(", exit.signal(), ")");
    end.why = absl::StrCat(where, " was killed by signal ", exit.signal(), " (",
                           strsignal(exit.signal()), ")");
    end.exit_code = 128 + exit.signal();
  } else {
    end.state = absl::StrCat("exited(", exit.exit_code(), ")");
    end.why = absl::StrCat(where, " exited with code ", exit.exit_code());
    const int code = exit.exit_code();
    end.outcome = code == 0                 ? Outcome::kSuccess
                  : code == 2               ? Outcome::kBadInput
                  : code == 126 || code == 127 ? Outcome::kCannotStart
                                            : Outcome::kFailure;
    end.exit_code = exit.exit_code();
  }
  LOG_INFO("job {}: {} (attempt {})", rec->job.id(), end.why, exit.attempt());
  if (end.outcome != Outcome::kSuccess) {
    // Log tails are arbitrary bytes; Job.message and events are proto strings (UTF-8).
    end.tail = rpc::ValidUtf8(!exit.tail().empty()
                                  ? exit.tail()
                                  : logs_->Tail(rec->job.id(), exit.attempt(), exit.rank(), kTailBytes));
  }
  RankDone(*rec, exit.rank(), end);
}

void Scheduler::ProcessMissing(NodeRecord& node, const std::set<WorkerKey>& mentioned) {
  const std::vector<int64_t> live(live_.begin(), live_.end());  // RankDone may shrink live_
  for (int64_t seq : live) {
    JobRecord& rec = *jobs_.at(seq);
    for (int rank = 0; rank < static_cast<int>(rec.ranks.size()); ++rank) {
      RankSlot& slot = rec.ranks[rank];
      if (slot.placement.node_id() != node.row.id || slot.phase == RankPhase::kDone ||
          !slot.delivered || mentioned.count({rec.job.id(), rec.job.attempt(), rank})) {
        continue;
      }
      ++slot.missed;
      const bool active = IsActive(rec.job.state());
      if (slot.phase == RankPhase::kAssigned && active) {
        if (slot.missed >= kResendHeartbeats) {
          LOG_WARN("job {}: node {} has not reported rank {} for {} heartbeats; assigning it again",
                   rec.job.id(), node.row.id, rank, slot.missed);
          node.start.push_back(MakeAssignment(rec, rank));
          slot.delivered = false;
          slot.missed = 0;
        }
      } else if (slot.missed >= kVanishHeartbeats) {
        RankEnd end;
        end.state = slot.phase == RankPhase::kRunning ? "lost" : "stopped";
        end.why = absl::StrCat("rank ", rank, " vanished from node ", node.row.id,
                               " (its daemon stopped reporting it)");
        RankDone(rec, rank, end);
      }
    }
  }
}

void Scheduler::NodeLost(NodeRecord& node, const std::string& why) {
  node.row.alive = false;
  node.registered = false;
  SaveNode(node);
  LOG_WARN("node {}: lost: {}", node.row.id, why);
  const std::vector<int64_t> live(live_.begin(), live_.end());
  for (int64_t seq : live) {
    JobRecord& rec = *jobs_.at(seq);
    for (int rank = 0; rank < static_cast<int>(rec.ranks.size()); ++rank) {
      if (rec.ranks[rank].placement.node_id() == node.row.id) {
        RankDone(rec, rank,
                 {"lost", Outcome::kFailure,
                  absl::StrCat("node ", node.row.id, " was lost (", why, ")")});
      }
    }
  }
  node.start.clear();
  node.stop.clear();
  node.stop_sent_ms.clear();
}

}  // namespace colossal::coordinator
