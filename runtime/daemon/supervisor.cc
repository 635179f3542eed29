// Worker bookkeeping: start (spec, log, environment), stop, reap, queue exits, ship logs.
#include "runtime/daemon/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/daemon/worker_process.h"

namespace colossal::daemon {
namespace {

namespace fs = std::filesystem;

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

// Job ids become directory names: letters, digits, '.', '_', '-' only.
bool SafeJobId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

void AppendLine(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string text = line + "\n";
  ssize_t ignored = write(fd, text.data(), text.size());
  (void)ignored;
  close(fd);
}

}  // namespace

Supervisor::Supervisor(SupervisorOptions options) : options_(std::move(options)) {}

std::string Supervisor::RankDir(const Key& key) const {
  const auto& [job, attempt, rank] = key;
  return (fs::path(options_.state_dir) / "jobs" / job / absl::StrCat("attempt-", attempt) /
          absl::StrCat("rank-", rank))
      .string();
}

bool Supervisor::Start(const v1::Assignment& a) {
  const Key key{a.job_id(), a.attempt(), a.rank()};
  if (!seen_.insert(key).second) {
    LOG_DEBUG("assignment job {} attempt {} rank {} already started here; ignored", a.job_id(),
              a.attempt(), a.rank());
    return false;
  }
  if (stopped_.count({a.job_id(), a.attempt()}) || stopped_.count({a.job_id(), 0})) {
    LOG_INFO("not starting job {} attempt {} rank {}: the attempt was stopped", a.job_id(),
             a.attempt(), a.rank());
    QueueExit(key, 0, SIGTERM, "colossald: not started: the attempt was stopped before");
    return true;
  }
  if (!SafeJobId(a.job_id()) || a.attempt() < 0 || a.rank() < 0) {
    FailStart(key, "", absl::StrCat("invalid assignment: job id '", a.job_id(), "' attempt ",
                                    a.attempt(), " rank ", a.rank()));
    return true;
  }
  const std::string dir = RankDir(key);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    FailStart(key, "", absl::StrCat("cannot create ", dir, ": ", ec.message()));
    return true;
  }
  const std::string log_path = dir + "/worker.log";
  logs_[key] = Log{log_path, next_seq_++, 0, -1};
  const std::string spec_path = dir + "/job.yaml";
  {
    std::ofstream spec(spec_path, std::ios::binary | std::ios::trunc);
    spec << a.spec_yaml();
    spec.close();
    if (!spec) {
      FailStart(key, log_path, absl::StrCat("cannot write ", spec_path));
      return true;
    }
  }

  LaunchSpec launch;
  launch.argv = options_.worker_command;
  launch.argv.push_back("--spec");
  launch.argv.push_back(spec_path);
  launch.log_path = log_path;
  launch.env = CurrentEnvironment();
  auto set = [&launch](std::string_view name, const std::string& value) {
    SetEnv(launch.env, std::string(name), value);
  };
  set(base::kEnvRank, absl::StrCat(a.rank()));
  set(base::kEnvWorldSize, absl::StrCat(a.world_size()));
  set(base::kEnvLocalRank, absl::StrCat(a.local_rank()));
  set(base::kEnvLocalWorldSize, absl::StrCat(a.local_world_size()));
  set(base::kEnvMasterAddr, a.master_addr());
  set(base::kEnvMasterPort, absl::StrCat(a.master_port()));
  set(base::kEnvCoordinator, options_.coordinator);
  set(base::kEnvJobId, a.job_id());
  set(base::kEnvAttempt, absl::StrCat(a.attempt()));
  if (a.threads() > 0) set(base::kEnvThreads, absl::StrCat(a.threads()));
  if (!a.device().empty()) set(base::kEnvDevice, a.device());
  if (!options_.token_file.empty()) set(base::kEnvTokenFile, options_.token_file);
  if (!options_.tls_ca.empty()) set(base::kEnvTlsCa, options_.tls_ca);
  std::map<std::string, std::string> job_env(a.env().begin(), a.env().end());  // sorted
  for (const auto& [name, value] : job_env) SetEnv(launch.env, name, value);

  auto pid = SpawnProcess(launch);
  if (!pid.ok()) {
    FailStart(key, log_path, std::string(pid.status().message()));
    return true;
  }
  workers_[*pid] = Worker{key, std::nullopt};
  LOG_INFO("worker started: job {} attempt {} rank {} pid {}", a.job_id(), a.attempt(), a.rank(),
           *pid);
  return true;
}

void Supervisor::FailStart(const Key& key, const std::string& log_path,
                           const std::string& message) {
  const auto& [job, attempt, rank] = key;
  LOG_WARN("worker failed to start: job {} attempt {} rank {}: {}", job, attempt, rank, message);
  std::string tail = absl::StrCat("colossald: cannot start worker: ", message);
  if (!log_path.empty()) {
    AppendLine(log_path, tail);
    Log& log = logs_[key];
    log.path = log_path;
    log.seq = next_seq_++;
    log.final_size = FileSize(log_path);
    tail = ReadTail(log_path);
  }
  QueueExit(key, 127, 0, tail);
}

void Supervisor::QueueExit(const Key& key, int exit_code, int signal, const std::string& tail) {
  QueuedExit queued;
  queued.id = next_exit_id_++;
  queued.key = key;
  const auto& [job, attempt, rank] = key;
  queued.exit.set_job_id(job);
  queued.exit.set_attempt(attempt);
  queued.exit.set_rank(rank);
  queued.exit.set_exit_code(exit_code);
  queued.exit.set_signal(signal);
  queued.exit.set_unix_ms(UnixMs());
  queued.exit.set_tail(tail);
  exits_.push_back(std::move(queued));
}

void Supervisor::OnExit(std::map<pid_t, Worker>::iterator it, int exit_code, int signal) {
  const Key key = it->second.key;
  const auto& [job, attempt, rank] = key;
  LOG_INFO("worker exited: job {} attempt {} rank {} pid {}: {}", job, attempt, rank,
           it->first, DescribeExit(ProcessExit{exit_code, signal}));
  workers_.erase(it);
  std::string tail;
  auto log = logs_.find(key);
  if (log != logs_.end()) {
    log->second.final_size = FileSize(log->second.path);
    tail = ReadTail(log->second.path);
  }
  QueueExit(key, exit_code, signal, tail);
}

void Supervisor::StopAttempt(const v1::StopAttempt& stop) {
  const auto now = Clock::now();
  stopped_.insert({stop.job_id(), std::max(0, stop.attempt())});
  for (auto& [pid, worker] : workers_) {
    const auto& [job, attempt, rank] = worker.key;
    if (job != stop.job_id() || (stop.attempt() > 0 && attempt != stop.attempt())) continue;
    if (worker.kill_at) continue;  // already stopping
    const int64_t grace = std::max(0, stop.grace_ms());
    LOG_INFO("stopping worker: job {} attempt {} rank {} pid {} (SIGTERM, SIGKILL after {} ms)",
             job, attempt, rank, pid, grace);
    SignalGroup(pid, SIGTERM);
    worker.kill_at = now + std::chrono::milliseconds(grace);
  }
}

int Supervisor::Poll() {
  int exited = 0;
  const auto now = Clock::now();
  for (auto it = workers_.begin(); it != workers_.end();) {
    auto next = std::next(it);
    if (auto done = TryReap(it->first)) {
      OnExit(it, done->exit_code, done->signal);
      ++exited;
    } else if (it->second.kill_at && now >= *it->second.kill_at) {
      const auto& [job, attempt, rank] = it->second.key;
      LOG_INFO("grace over, SIGKILL: job {} attempt {} rank {} pid {}", job, attempt, rank,
               it->first);
      SignalGroup(it->first, SIGKILL);
      it->second.kill_at = now + std::chrono::hours(24);  // once
    }
    it = next;
  }
  return exited;
}

void Supervisor::KillAll(int64_t grace_ms) {
  const auto start = Clock::now();
  const auto kill_at = start + std::chrono::milliseconds(std::max<int64_t>(0, grace_ms));
  for (auto& [pid, worker] : workers_) {
    SignalGroup(pid, SIGTERM);
    if (!worker.kill_at || *worker.kill_at > kill_at) worker.kill_at = kill_at;
  }
  const auto give_up = kill_at + std::chrono::seconds(5);
  while (!workers_.empty() && Clock::now() < give_up) {
    Poll();
    if (!workers_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (const auto& [pid, worker] : workers_) {
    LOG_ERROR("worker pid {} of job {} survived SIGKILL for 5 s; giving up on it", pid,
              std::get<0>(worker.key));
  }
}

std::vector<v1::RunningWorker> Supervisor::Running() const {
  std::vector<v1::RunningWorker> running;
  for (const auto& [pid, worker] : workers_) {
    v1::RunningWorker r;
    r.set_job_id(std::get<0>(worker.key));
    r.set_attempt(std::get<1>(worker.key));
    r.set_rank(std::get<2>(worker.key));
    r.set_pid(pid);
    running.push_back(std::move(r));
  }
  return running;
}

Outgoing Supervisor::Collect(size_t log_budget) {
  Outgoing out;
  // Logs with pending bytes: ended workers first (their exits wait on them), then by start.
  struct Pending {
    const Key* key;
    Log* log;
    int64_t size;
    int64_t take = 0;
  };
  std::vector<Pending> pending;
  for (auto& [key, log] : logs_) {
    const int64_t size = log.final_size >= 0 ? log.final_size : FileSize(log.path);
    if (size > log.shipped) pending.push_back(Pending{&key, &log, size});
  }
  std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    const bool a_ended = a.log->final_size >= 0, b_ended = b.log->final_size >= 0;
    if (a_ended != b_ended) return a_ended;
    return a.log->seq < b.log->seq;
  });
  // A fair share each first (at least 4 KiB), then what is left in order.
  int64_t left = static_cast<int64_t>(log_budget);
  if (!pending.empty()) {
    const int64_t share = std::max<int64_t>(4 << 10, left / static_cast<int64_t>(pending.size()));
    for (int pass = 0; pass < 2; ++pass) {
      for (Pending& p : pending) {
        const int64_t cap = pass == 0 ? share : left;
        const int64_t more = std::min({p.size - p.log->shipped - p.take, cap, left});
        if (more > 0) {
          p.take += more;
          left -= more;
        }
      }
    }
  }
  std::map<Key, int64_t> shipped_after;
  for (Pending& p : pending) {
    if (p.take <= 0) continue;
    std::string data(static_cast<size_t>(p.take), '\0');
    const int fd = open(p.log->path.c_str(), O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, data.data(), data.size(), p.log->shipped);
    if (fd >= 0) close(fd);
    if (n <= 0) continue;
    data.resize(static_cast<size_t>(n));
    v1::LogChunk chunk;
    chunk.set_job_id(std::get<0>(*p.key));
    chunk.set_attempt(std::get<1>(*p.key));
    chunk.set_rank(std::get<2>(*p.key));
    chunk.set_offset(p.log->shipped);
    chunk.set_data(std::move(data));
    shipped_after[*p.key] = p.log->shipped + n;
    out.logs.push_back(std::move(chunk));
  }
  for (const QueuedExit& queued : exits_) {
    auto log = logs_.find(queued.key);
    if (log != logs_.end()) {
      auto in_this = shipped_after.find(queued.key);
      const int64_t shipped = in_this != shipped_after.end() ? in_this->second : log->second.shipped;
      if (shipped < log->second.final_size) continue;  // its log first
    }
    out.exits.push_back(queued.exit);
    out.exit_ids.push_back(queued.id);
  }
  return out;
}

void Supervisor::Acknowledge(const Outgoing& sent) {
  for (const v1::LogChunk& chunk : sent.logs) {
    auto log = logs_.find(Key{chunk.job_id(), chunk.attempt(), chunk.rank()});
    if (log == logs_.end() || chunk.offset() > log->second.shipped) continue;
    log->second.shipped = std::max<int64_t>(
        log->second.shipped, chunk.offset() + static_cast<int64_t>(chunk.data().size()));
  }
  const std::set<uint64_t> acked(sent.exit_ids.begin(), sent.exit_ids.end());
  std::erase_if(exits_, [&](const QueuedExit& e) { return acked.count(e.id) > 0; });
  // Forget logs that are complete and whose exit the coordinator has.
  std::set<Key> waiting;
  for (const QueuedExit& e : exits_) waiting.insert(e.key);
  std::erase_if(logs_, [&](const auto& entry) {
    const Log& log = entry.second;
    return log.final_size >= 0 && log.shipped >= log.final_size && !waiting.count(entry.first);
  });
}

}  // namespace colossal::daemon
