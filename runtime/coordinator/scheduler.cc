// Jobs: submission, queries, cancel, progress, the state machine, placement and the
// restart policy. Node-facing parts (register, heartbeats, leases) are in
// scheduler_nodes.cc.
#include "runtime/coordinator/scheduler.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"
#include "runtime/coordinator/time.h"

namespace colossal::coordinator {
namespace {

// More ranks than this in one job is a typo, not a cluster.
constexpr int64_t kMaxWorldSize = 1 << 16;

}  // namespace

std::string JobId(int64_t seq) { return absl::StrFormat("j-%06d", seq); }

int64_t JobSeq(const std::string& job_id) {
  int64_t seq = -1;
  if (job_id.size() < 3 || job_id.compare(0, 2, "j-") != 0 ||
      !std::all_of(job_id.begin() + 2, job_id.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(job_id.substr(2), &seq) || JobId(seq) != job_id) {
    return -1;
  }
  return seq;
}

bool IsActive(v1::JobState state) { return state == v1::SCHEDULED || state == v1::RUNNING; }

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

Scheduler::Scheduler(const SchedulerOptions& options, JobStore* store, LogStore* logs,
                     RendezvousTable* rendezvous, EventHub* events)
    : options_(options), store_(store), logs_(logs), rendezvous_(rendezvous), events_(events) {}

// ---------------------------------------------------------------------------------
// Restore

absl::Status Scheduler::Restore() {
  ASSIGN_OR_RETURN(StoreSnapshot snapshot, store_->Load());
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = SteadyMs();
    for (NodeRow& row : snapshot.nodes) {
      int64_t n = 0;
      if (row.id.size() > 2 && row.id.compare(0, 2, "n-") == 0 &&
          absl::SimpleAtoi(row.id.substr(2), &n)) {
        next_node_ = std::max(next_node_, n + 1);
      }
      NodeRecord& node = nodes_[row.id];
      node.row = std::move(row);
      node.last_seen_ms = now;  // lease_ms from now to re-register
      node.saved_ms = UnixMs();
    }
    int active = 0;
    for (StoredJob& stored : snapshot.jobs) {
      auto record = std::make_unique<JobRecord>();
      JobRecord& rec = *record;
      rec.seq = stored.seq;
      rec.job = std::move(stored.job);
      rec.progress_saved_ms = UnixMs();
      // Only jobs that may still run need their spec; finished ones (the bulk of a long
      // history) are never parsed.
      absl::Status spec_status;
      if (!IsTerminal(rec.job.state())) {
        absl::StatusOr<config::JobSpec> spec =
            config::ParseJobSpec(rec.job.spec_yaml(), rec.job.id());
        if (spec.ok()) {
          rec.spec = *std::move(spec);
        } else {
          spec_status = spec.status();
        }
      }
      if (stored.attempt) {
        rec.master_addr = stored.attempt->master_addr;
        rec.master_port = stored.attempt->master_port;
        rec.scheduled_ms = stored.attempt->scheduled_ms;
        rec.ended_ms = stored.attempt->ended_ms;
        for (v1::RankPlacement& p : stored.attempt->ranks) {
          RankSlot slot;
          slot.phase = p.state() == "assigned"  ? RankPhase::kAssigned
                       : p.state() == "running" ? RankPhase::kRunning
                                                : RankPhase::kDone;
          slot.delivered = true;  // unknown; a daemon that lacks it gets it again (header)
          slot.placement = std::move(p);
          rec.ranks.push_back(std::move(slot));
        }
      }
      next_seq_ = std::max(next_seq_, rec.seq + 1);
      const bool outstanding = rec.HasOutstandingRanks();
      // A finished job needs no RendezvousTable::Close: CheckJoin refuses its joins.
      if (IsTerminal(rec.job.state())) {
        if (!outstanding) rec.settled_ms = 0;
      } else {
        ++active;
        if (rec.job.attempt() > 0) rendezvous_->Open(rec.job.id(), rec.job.attempt());
      }
      if (!IsTerminal(rec.job.state()) || outstanding) live_.insert(rec.seq);
      jobs_[rec.seq] = std::move(record);
      if (!spec_status.ok()) {
        SetState(rec, v1::FAILED,
                 absl::StrCat("its stored spec no longer parses: ", spec_status.message()));
        StopAttemptRanks(rec);
      }
    }
    LOG_INFO("coordinator: restored {} jobs ({} active) and {} nodes from the state store",
             jobs_.size(), active, nodes_.size());
  }
  return store_->Sync();
}

// ---------------------------------------------------------------------------------
// JobService

absl::StatusOr<v1::SubmitJobResponse> Scheduler::Submit(const v1::SubmitJobRequest& request) {
  const std::string source = request.source().empty() ? "<submitted job>" : request.source();
  const std::vector<std::string> overrides(request.overrides().begin(), request.overrides().end());
  ASSIGN_OR_RETURN(config::JobSpec spec, config::ParseJobSpec(request.yaml(), source, overrides));
  config::ResolvePaths(spec, request.base_dir());
  const config::ResourcesSpec res = spec.resources;
  if (res.WorldSize() > kMaxWorldSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": resources: ", res.nodes, " x ", res.ranks_per_node, " = ",
                     res.WorldSize(), " ranks; at most ", kMaxWorldSize, " are supported"));
  }
  v1::SubmitJobResponse response;
  response.set_spec_yaml(config::ToYaml(spec));
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckCanFit(res.nodes, res.ranks_per_node, LiveNodes(), res.device == config::DeviceKind::kCuda));
    if (request.validate_only()) return response;

    auto record = std::make_unique<JobRecord>();
    JobRecord& rec = *record;
    rec.seq = next_seq_++;
    rec.spec = std::move(spec);
    v1::Job& job = rec.job;
    job.set_id(JobId(rec.seq));
    job.set_name(rec.spec.name);
    job.set_state(v1::PENDING);
    job.set_total_steps(rec.spec.train.steps);
    job.set_val_loss(-1);
    job.set_submitted_unix_ms(UnixMs());
    job.set_world_size(static_cast<int32_t>(res.WorldSize()));
    job.set_run_dir(rec.spec.run_dir);
    job.set_spec_yaml(response.spec_yaml());
    rec.progress_saved_ms = job.submitted_unix_ms();
    store_->PutJob(rec.seq, job);
    store_->AddEvent(job.id(), job.submitted_unix_ms(), 0, v1::PENDING, "submitted");
    LOG_INFO("job {}: submitted '{}' ({} x {} ranks), PENDING", job.id(), job.name(), res.nodes,
             res.ranks_per_node);
    live_.insert(rec.seq);
    jobs_[rec.seq] = std::move(record);
    Schedule();
    response.set_job_id(rec.job.id());
    *response.mutable_job() = Snapshot(rec);
  }
  RETURN_IF_ERROR(store_->Sync());
  return response;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const JobRecord* rec = FindLocked(job_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return Snapshot(*rec);
}

v1::ListJobsResponse Scheduler::ListJobs(const v1::ListJobsRequest& request) const {
  std::lock_guard<std::mutex> lock(mu_);
  v1::ListJobsResponse response;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    if (request.limit() > 0 && response.jobs_size() >= request.limit()) break;
    if (request.active_only() && IsTerminal(it->second->job.state())) continue;
    *response.add_jobs() = Snapshot(*it->second);
  }
  return response;
}

absl::StatusOr<v1::Job> Scheduler::Cancel(const std::string& job_id) {
  v1::Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    JobRecord* rec = FindLocked(job_id);
    if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
    if (IsTerminal(rec->job.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is already ", v1::JobState_Name(rec->job.state()),
                       "; only PENDING, SCHEDULED, RUNNING or RESTARTING jobs can be cancelled"));
    }
    SetState(*rec, v1::CANCELLED, "cancelled on request");
    StopAttemptRanks(*rec);
    Schedule();
    job = Snapshot(*rec);
  }
  RETURN_IF_ERROR(store_->Sync());
  return job;
}

absl::StatusOr<std::shared_ptr<Subscription>> Scheduler::Watch(const std::string& job_id,
                                                               v1::JobEvent* current) {
  std::lock_guard<std::mutex> lock(mu_);
  const JobRecord* rec = FindLocked(job_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  current->set_job_id(job_id);
  current->set_unix_ms(UnixMs());
  current->set_attempt(rec->job.attempt());
  current->set_state(rec->job.state());
  current->set_message(rec->job.message());
  return events_->Subscribe(job_id);
}

absl::StatusOr<Scheduler::LogState> Scheduler::GetLogState(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const JobRecord* rec = FindLocked(job_id);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return LogState{rec->settled_ms >= 0, rec->settled_ms};
}

// ---------------------------------------------------------------------------------
// Rendezvous and WorkerService

absl::Status Scheduler::CheckJoin(const v1::JoinRequest& request) const {
  std::lock_guard<std::mutex> lock(mu_);
  const JobRecord* rec = FindLocked(request.job_id());
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", request.job_id(), "'"));
  const v1::Job& job = rec->job;
  const std::string who = absl::StrCat("rendezvous of ", job.id(), " attempt ", request.attempt());
  if (IsTerminal(job.state())) {
    return absl::AbortedError(absl::StrCat(who, ": the job is ", v1::JobState_Name(job.state())));
  }
  if (request.attempt() < job.attempt() ||
      (request.attempt() == job.attempt() && job.state() == v1::RESTARTING)) {
    return absl::AbortedError(absl::StrCat(who, ": superseded (the job is ",
                                           v1::JobState_Name(job.state()), ", attempt ",
                                           job.attempt(), ")"));
  }
  if (request.attempt() > job.attempt() || request.attempt() < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": no such attempt (current: ", job.attempt(), ")"));
  }
  if (request.world_size() != job.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": world_size ", request.world_size(),
                                                   ", but the job has ", job.world_size(),
                                                   " ranks"));
  }
  if (request.rank() < 0 || request.rank() >= job.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": rank ", request.rank(), " is outside [0, ", job.world_size(), ")"));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::ReportProgress(const v1::ProgressReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  JobRecord* rec = FindLocked(report.job_id());
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no job '", report.job_id(), "'"));
  v1::Job& job = rec->job;
  if (report.rank() != 0 || report.attempt() != job.attempt() || !IsActive(job.state())) {
    return absl::OkStatus();
  }
  v1::JobEvent event;
  event.set_job_id(job.id());
  event.set_unix_ms(UnixMs());
  event.set_attempt(job.attempt());
  if (report.has_step()) {
    job.set_step(report.step().step());
    if (report.step().total_steps() > 0) job.set_total_steps(report.step().total_steps());
    job.set_loss(report.step().loss());
    *event.mutable_step() = report.step();
  } else if (report.has_val()) {
    job.set_val_loss(report.val().val_loss());
    *event.mutable_val() = report.val();
  } else {
    return absl::OkStatus();
  }
  events_->Publish(event);
  rec->progress_dirty = true;
  SaveProgressIfDue(*rec, event.unix_ms());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------
// The state machine (mu_ held below)

Scheduler::JobRecord* Scheduler::FindLocked(const std::string& job_id) const {
  auto it = jobs_.find(JobSeq(job_id));
  return it == jobs_.end() ? nullptr : it->second.get();
}

v1::Job Scheduler::Snapshot(const JobRecord& record) const {
  v1::Job job = record.job;
  for (const RankSlot& slot : record.ranks) *job.add_ranks() = slot.placement;
  return job;
}

void Scheduler::SetState(JobRecord& rec, v1::JobState state, const std::string& message) {
  v1::Job& job = rec.job;
  const v1::JobState old = job.state();
  const int64_t now = UnixMs();
  job.set_state(state);
  job.set_message(message);
  if (IsTerminal(state)) job.set_finished_unix_ms(now);
  LOG_INFO("job {}: {} -> {} (attempt {}){}{}", job.id(), v1::JobState_Name(old),
           v1::JobState_Name(state), job.attempt(), message.empty() ? "" : ": ",
           absl::StrReplaceAll(message, {{"\n", " | "}}));  // one line, log tails included
  store_->PutJob(rec.seq, job);
  store_->AddEvent(job.id(), now, job.attempt(), state, message);
  rec.progress_saved_ms = now;
  rec.progress_dirty = false;
  v1::JobEvent event;
  event.set_job_id(job.id());
  event.set_unix_ms(now);
  event.set_attempt(job.attempt());
  event.set_state(state);
  event.set_message(message);
  events_->Publish(event);
  if (IsTerminal(state)) {
    rendezvous_->Close(job.id());
    UpdateSettled(rec);
  }
}

void Scheduler::SaveAttempt(JobRecord& rec) {
  if (rec.job.attempt() == 0) return;
  AttemptRow row;
  row.job_id = rec.job.id();
  row.attempt = rec.job.attempt();
  row.master_addr = rec.master_addr;
  row.master_port = rec.master_port;
  row.scheduled_ms = rec.scheduled_ms;
  for (const RankSlot& slot : rec.ranks) row.ranks.push_back(slot.placement);
  if (!rec.HasOutstandingRanks() && rec.ended_ms == 0) rec.ended_ms = UnixMs();
  row.ended_ms = rec.ended_ms;
  store_->PutAttempt(row);
  UpdateSettled(rec);
}

void Scheduler::SaveProgressIfDue(JobRecord& rec, int64_t unix_now) {
  if (!rec.progress_dirty || unix_now - rec.progress_saved_ms < kProgressSaveMs) return;
  store_->PutProgress(rec.job);  // committed by the next Sync (Tick, at the latest)
  rec.progress_saved_ms = unix_now;
  rec.progress_dirty = false;
}

void Scheduler::UpdateSettled(JobRecord& rec) {
  if (!IsTerminal(rec.job.state()) || rec.settled_ms >= 0 || rec.HasOutstandingRanks()) return;
  rec.settled_ms = SteadyMs();
  live_.erase(rec.seq);
}

std::map<std::string, int> Scheduler::SlotsUsed() const {
  std::map<std::string, int> used;
  for (int64_t seq : live_) {
    for (const RankSlot& slot : jobs_.at(seq)->ranks) {
      if (slot.phase != RankPhase::kDone) ++used[slot.placement.node_id()];
    }
  }
  return used;
}

std::vector<NodeCapacity> Scheduler::LiveNodes() const {
  std::map<std::string, int> used = SlotsUsed();
  // GPUs held by the ranks of unfinished attempts, per node.
  std::map<std::string, std::set<int>> held;
  for (int64_t seq : live_) {
    for (const RankSlot& slot : jobs_.at(seq)->ranks) {
      const int ordinal = base::CudaOrdinalOf(slot.placement.device());
      if (slot.phase != RankPhase::kDone && ordinal >= 0) held[slot.placement.node_id()].insert(ordinal);
    }
  }
  std::vector<NodeCapacity> live;
  for (const auto& [id, node] : nodes_) {
    if (!node.registered || !node.row.alive) continue;
    NodeCapacity n{id, node.row.slots, node.row.slots - used[id]};
    n.gpus = CudaOrdinals(node.row.devices);
    for (int g : n.gpus) {
      if (held[id].count(g) == 0) n.free_gpus.push_back(g);
    }
    live.push_back(std::move(n));
  }
  return live;
}

void Scheduler::Schedule() {
  std::vector<NodeCapacity> live = LiveNodes();
  for (int64_t seq : live_) {
    JobRecord& rec = *jobs_.at(seq);
    const v1::JobState state = rec.job.state();
    const bool waiting =
        state == v1::PENDING || (state == v1::RESTARTING && !rec.HasOutstandingRanks());
    if (!waiting) continue;
    const int64_t nodes = rec.spec.resources.nodes;
    const int64_t rpn = rec.spec.resources.ranks_per_node;
    const bool cuda = rec.spec.resources.device == config::DeviceKind::kCuda;
    // A job that cannot fit the live nodes at all waits for nodes without blocking the
    // queue; one that fits but finds too few free slots now keeps its place (FIFO).
    if (!CheckCanFit(nodes, rpn, live, cuda).ok()) continue;
    std::vector<size_t> chosen = PickNodes(nodes, rpn, live, cuda);
    if (chosen.empty()) {
      if (state == v1::PENDING) rec.job.set_message(WaitReason(nodes, rpn, live, cuda));
      break;
    }
    PlaceAttempt(rec, live, chosen);
    for (size_t i : chosen) {
      live[i].free_slots -= static_cast<int>(rpn);
      if (cuda) live[i].free_gpus.erase(live[i].free_gpus.begin(), live[i].free_gpus.begin() + rpn);
    }
  }
}

void Scheduler::PlaceAttempt(JobRecord& rec, const std::vector<NodeCapacity>& live,
                             const std::vector<size_t>& chosen) {
  v1::Job& job = rec.job;
  if (job.state() != v1::PENDING) job.set_restarts(job.restarts() + 1);
  job.set_attempt(job.attempt() + 1);
  const int rpn = static_cast<int>(rec.spec.resources.ranks_per_node);
  rec.ranks.assign(chosen.size() * rpn, RankSlot{});
  rec.master_addr = nodes_.at(live[chosen[0]].id).row.address;
  rec.master_port = MasterPort(rec.seq, job.attempt());
  rec.scheduled_ms = UnixMs();
  rec.ended_ms = 0;
  std::vector<std::string> names;
  for (size_t i = 0; i < chosen.size(); ++i) {
    const std::string& node_id = live[chosen[i]].id;
    names.push_back(node_id);
    for (int local = 0; local < rpn; ++local) {
      v1::RankPlacement& p = rec.ranks[i * rpn + local].placement;
      p.set_rank(static_cast<int32_t>(i * rpn + local));
      p.set_node_id(node_id);
      p.set_local_rank(local);
      p.set_state("assigned");
      // One GPU per rank, lowest free ordinal first (PickNodes checked there are enough).
      if (rec.spec.resources.device == config::DeviceKind::kCuda) {
        p.set_device(base::CudaDeviceName(live[chosen[i]].free_gpus[local]));
      }
    }
  }
  for (int rank = 0; rank < static_cast<int>(rec.ranks.size()); ++rank) {
    nodes_.at(rec.ranks[rank].placement.node_id()).start.push_back(MakeAssignment(rec, rank));
  }
  rendezvous_->Open(job.id(), job.attempt());
  SaveAttempt(rec);
  SetState(
      rec, v1::SCHEDULED,
      absl::StrCat(rec.ranks.size(), rec.ranks.size() == 1 ? " rank" : " ranks", " placed on ",
                   absl::StrJoin(names, ", "), "; master ", rec.master_addr, ":", rec.master_port));
}

v1::Assignment Scheduler::MakeAssignment(const JobRecord& rec, int rank) const {
  const v1::RankPlacement& p = rec.ranks[rank].placement;
  const config::ResourcesSpec& res = rec.spec.resources;
  auto node = nodes_.find(p.node_id());
  const int cores = node == nodes_.end() ? 0 : node->second.row.cpu_cores;
  v1::Assignment a;
  a.set_job_id(rec.job.id());
  a.set_attempt(rec.job.attempt());
  a.set_rank(p.rank());
  a.set_local_rank(p.local_rank());
  a.set_world_size(rec.job.world_size());
  a.set_local_world_size(static_cast<int32_t>(res.ranks_per_node));
  a.set_spec_yaml(rec.job.spec_yaml());
  a.set_master_addr(rec.master_addr);
  a.set_master_port(rec.master_port);
  a.mutable_env()->insert(rec.spec.env.begin(), rec.spec.env.end());
  a.set_threads(ThreadsPerRank(res.threads_per_rank, cores, res.ranks_per_node));
  a.set_device(p.device());
  return a;
}

void Scheduler::CheckRunning(JobRecord& rec) {
  if (rec.job.state() != v1::SCHEDULED) return;
  for (const RankSlot& slot : rec.ranks) {
    if (slot.phase == RankPhase::kAssigned) return;
  }
  SetState(rec, v1::RUNNING,
           rec.ranks.size() == 1 ? "the rank started"
                                 : absl::StrCat("all ", rec.ranks.size(), " ranks started"));
}

void Scheduler::RankDone(JobRecord& rec, int rank, const RankEnd& end) {
  RankSlot& slot = rec.ranks[rank];
  if (slot.phase == RankPhase::kDone) return;
  if (!slot.delivered) DropQueuedStart(rec, rank);
  slot.phase = RankPhase::kDone;
  slot.placement.set_state(end.state);
  v1::Job& job = rec.job;
  if (!IsActive(job.state())) {  // RESTARTING or terminal: the attempt is already ending
    SaveAttempt(rec);
    return;
  }
  if (end.outcome == Outcome::kSuccess) {
    CheckRunning(rec);
    const bool all_ok = std::all_of(rec.ranks.begin(), rec.ranks.end(), [](const RankSlot& s) {
      return s.phase == RankPhase::kDone && s.placement.state() == "exited(0)";
    });
    SaveAttempt(rec);
    if (all_ok) {
      SetState(rec, v1::SUCCEEDED,
               rec.ranks.size() == 1
                   ? "the rank exited with code 0"
                   : absl::StrCat("all ", rec.ranks.size(), " ranks exited with code 0"));
    }
    return;
  }
  const std::string log_lines =
      end.tail.empty() ? "" : absl::StrCat("; last log lines:\n", end.tail);
  const int64_t max_restarts = rec.spec.train.max_restarts;
  if (end.outcome == Outcome::kBadInput) {
    job.set_exit_code(end.exit_code);
    SetState(rec, v1::FAILED, absl::StrCat(end.why, " (bad input: not restarted)", log_lines));
  } else if (end.outcome == Outcome::kCannotStart) {
    job.set_exit_code(end.exit_code);
    SetState(rec, v1::FAILED,
             absl::StrCat(end.why, " (the worker could not be started: not restarted)", log_lines));
  } else if (job.restarts() < max_restarts) {
    SetState(rec, v1::RESTARTING,
             absl::StrCat(end.why, "; restart ", job.restarts() + 1, " of ", max_restarts));
    rendezvous_->Open(job.id(), job.attempt() + 1);
  } else {
    job.set_exit_code(end.exit_code);
    SetState(rec, v1::FAILED,
             absl::StrCat(end.why, "; no restarts left (train.max_restarts: ", max_restarts, ")",
                          log_lines));
  }
  StopAttemptRanks(rec);
}

void Scheduler::DropQueuedStart(const JobRecord& rec, int rank) {
  auto node = nodes_.find(rec.ranks[rank].placement.node_id());
  if (node == nodes_.end()) return;
  auto& start = node->second.start;
  start.erase(std::remove_if(start.begin(), start.end(),
                             [&](const v1::Assignment& a) {
                               return a.job_id() == rec.job.id() && a.rank() == rank;
                             }),
              start.end());
}

void Scheduler::StopAttemptRanks(JobRecord& rec) {
  for (RankSlot& slot : rec.ranks) {
    if (slot.phase == RankPhase::kDone) continue;
    auto node = nodes_.find(slot.placement.node_id());
    if (!slot.delivered) {
      DropQueuedStart(rec, slot.placement.rank());
      slot.phase = RankPhase::kDone;
      slot.placement.set_state("stopped");
    } else if (node != nodes_.end()) {
      EnsureStop(node->second, rec.job.id(), rec.job.attempt());
    }
  }
  SaveAttempt(rec);
}

void Scheduler::EnsureStop(NodeRecord& node, const std::string& job_id, int attempt) {
  const int64_t now = SteadyMs();
  auto [it, inserted] = node.stop_sent_ms.try_emplace({job_id, attempt}, now);
  if (!inserted) {
    if (now - it->second < options_.stop_grace_ms + 4 * options_.heartbeat_ms) return;
    it->second = now;
  }
  v1::StopAttempt stop;
  stop.set_job_id(job_id);
  stop.set_attempt(attempt);
  stop.set_grace_ms(static_cast<int32_t>(options_.stop_grace_ms));
  node.stop.push_back(std::move(stop));
}

}  // namespace colossal::coordinator
