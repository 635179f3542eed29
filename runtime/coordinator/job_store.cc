// SQLite schema, statements and the ordered, group-committed write queue.
#include "runtime/coordinator/job_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/base/logging.h"

namespace colossal::coordinator {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, name TEXT, state TEXT,
  attempt INTEGER, step INTEGER, total_steps INTEGER, loss REAL, val_loss REAL,
  message TEXT, submitted_ms INTEGER, started_ms INTEGER, finished_ms INTEGER,
  restarts INTEGER, world_size INTEGER, run_dir TEXT, spec_yaml TEXT, exit_code INTEGER);
CREATE TABLE IF NOT EXISTS attempts (
  job_id TEXT NOT NULL, attempt INTEGER NOT NULL, master_addr TEXT, master_port INTEGER,
  placement TEXT, scheduled_ms INTEGER, ended_ms INTEGER, PRIMARY KEY (job_id, attempt));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, unix_ms INTEGER,
  attempt INTEGER, state TEXT, message TEXT);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, hostname TEXT, address TEXT, slots INTEGER, cpu_cores INTEGER,
  devices TEXT, version TEXT, registered_ms INTEGER, last_seen_ms INTEGER, alive INTEGER);
)sql";

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat("state store: ", what, ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("state store: ", message, " (in: ", sql, ")"));
  }
  return absl::OkStatus();
}

// A prepared statement with positional binding; finalized on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }

  template <typename... Args>
  Stmt& Bind(const Args&... args) {
    int index = 0;
    (BindOne(++index, args), ...);
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; anything else is an error.
  int Step() { return sqlite3_step(stmt_); }
  absl::Status Run(const std::string& what) {
    if (!ok() || Step() != SQLITE_DONE) return SqlError(db_, what);
    return absl::OkStatus();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* text = sqlite3_column_text(stmt_, col);
    return text ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, col))
                : std::string();
  }

 private:
  void BindOne(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindOne(int i, int v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindOne(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void BindOne(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

std::string EncodePlacement(const std::vector<v1::RankPlacement>& ranks) {
  std::string out;
  for (const v1::RankPlacement& r : ranks) {
    absl::StrAppend(&out, r.rank(), "\t", r.node_id(), "\t", r.local_rank(), "\t", r.pid(), "\t",
                    r.state(), "\t", r.device(), "\n");
  }
  return out;
}

std::vector<v1::RankPlacement> DecodePlacement(const std::string& text) {
  std::vector<v1::RankPlacement> ranks;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() != 5 && f.size() != 6) continue;  // 5: written before ranks had devices
    v1::RankPlacement r;
    int32_t rank = 0, local_rank = 0;
    int64_t pid = 0;
    if (!absl::SimpleAtoi(f[0], &rank) || !absl::SimpleAtoi(f[2], &local_rank) ||
        !absl::SimpleAtoi(f[3], &pid)) {
      continue;
    }
    r.set_rank(rank);
    r.set_node_id(f[1]);
    r.set_local_rank(local_rank);
    r.set_pid(pid);
    r.set_state(f[4]);
    if (f.size() == 6) r.set_device(f[5]);
    ranks.push_back(std::move(r));
  }
  return ranks;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("cannot open state store ", path, ": ", db ? sqlite3_errmsg(db) : "?"));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<JobStore> store(new JobStore(db));
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", kSchema}) {
    absl::Status status = Exec(db, sql);
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat(path, ": ", status.message()));
    }
  }
  return store;
}

JobStore::~JobStore() {
  absl::Status status = Sync();
  if (!status.ok()) LOG_ERROR("closing the state store: {}", status.message());
  sqlite3_close(db_);
}

absl::StatusOr<StoreSnapshot> JobStore::Load() {
  std::lock_guard<std::mutex> lock(commit_mu_);
  StoreSnapshot snapshot;
  Stmt jobs(
      db_,
      "SELECT j.seq, j.id, j.name, j.state, j.attempt, j.step, j.total_steps, j.loss, "
      "j.val_loss, j.message, j.submitted_ms, j.started_ms, j.finished_ms, j.restarts, "
      "j.world_size, j.run_dir, j.spec_yaml, j.exit_code, a.attempt, a.master_addr, a.master_port, "
      "a.placement, a.scheduled_ms, a.ended_ms FROM jobs j LEFT JOIN attempts a "
      "ON a.job_id = j.id AND a.attempt = j.attempt ORDER BY j.seq");
  if (!jobs.ok()) return SqlError(db_, "reading jobs");
  int rc;
  while ((rc = jobs.Step()) == SQLITE_ROW) {
    StoredJob s;
    s.seq = jobs.Int(0);
    v1::Job& j = s.job;
    j.set_id(jobs.Text(1));
    j.set_name(jobs.Text(2));
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    v1::JobState_Parse(jobs.Text(3), &state);
    j.set_state(state);
    j.set_attempt(static_cast<int32_t>(jobs.Int(4)));
    j.set_step(jobs.Int(5));
    j.set_total_steps(jobs.Int(6));
    j.set_loss(jobs.Real(7));
    j.set_val_loss(jobs.Real(8));
    j.set_message(jobs.Text(9));
    j.set_submitted_unix_ms(jobs.Int(10));
    j.set_started_unix_ms(jobs.Int(11));
    j.set_finished_unix_ms(jobs.Int(12));
    j.set_restarts(static_cast<int32_t>(jobs.Int(13)));
    j.set_world_size(static_cast<int32_t>(jobs.Int(14)));
    j.set_run_dir(jobs.Text(15));
    j.set_spec_yaml(jobs.Text(16));
    j.set_exit_code(static_cast<int32_t>(jobs.Int(17)));
    if (jobs.Int(18) > 0) {
      AttemptRow a;
      a.job_id = j.id();
      a.attempt = static_cast<int>(jobs.Int(18));
      a.master_addr = jobs.Text(19);
      a.master_port = static_cast<int>(jobs.Int(20));
      a.ranks = DecodePlacement(jobs.Text(21));
      a.scheduled_ms = jobs.Int(22);
      a.ended_ms = jobs.Int(23);
      s.attempt = std::move(a);
    }
    snapshot.jobs.push_back(std::move(s));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "reading jobs");

  Stmt nodes(db_,
             "SELECT id, hostname, address, slots, cpu_cores, devices, version, registered_ms, "
             "last_seen_ms, alive FROM nodes ORDER BY id");
  if (!nodes.ok()) return SqlError(db_, "reading nodes");
  while ((rc = nodes.Step()) == SQLITE_ROW) {
    NodeRow n;
    n.id = nodes.Text(0);
    n.hostname = nodes.Text(1);
    n.address = nodes.Text(2);
    n.slots = static_cast<int>(nodes.Int(3));
    n.cpu_cores = static_cast<int>(nodes.Int(4));
    n.devices = absl::StrSplit(nodes.Text(5), '\n', absl::SkipEmpty());
    n.version = nodes.Text(6);
    n.registered_ms = nodes.Int(7);
    n.last_seen_ms = nodes.Int(8);
    n.alive = nodes.Int(9) != 0;
    snapshot.nodes.push_back(std::move(n));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "reading nodes");
  return snapshot;
}

void JobStore::PutJob(int64_t seq, const v1::Job& job) {
  v1::Job j = job;
  j.clear_ranks();
  Enqueue([seq, j = std::move(j)](sqlite3* db) {
    Stmt s(
        db,
        "INSERT OR REPLACE INTO jobs (id, seq, name, state, attempt, step, total_steps, "
        "loss, val_loss, message, submitted_ms, started_ms, finished_ms, restarts, "
        "world_size, run_dir, spec_yaml, exit_code) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.Bind(j.id(), seq, j.name(), v1::JobState_Name(j.state()), j.attempt(), j.step(),
           j.total_steps(), j.loss(), j.val_loss(), j.message(), j.submitted_unix_ms(),
           j.started_unix_ms(), j.finished_unix_ms(), j.restarts(), j.world_size(), j.run_dir(),
           j.spec_yaml(), j.exit_code());
    return s.Run("writing job " + j.id());
  });
}

void JobStore::PutProgress(const v1::Job& job) {
  Enqueue([id = job.id(), step = job.step(), total = job.total_steps(), loss = job.loss(),
           val_loss = job.val_loss()](sqlite3* db) {
    Stmt s(db, "UPDATE jobs SET step = ?, total_steps = ?, loss = ?, val_loss = ? WHERE id = ?");
    s.Bind(step, total, loss, val_loss, id);
    return s.Run("writing progress of " + id);
  });
}

void JobStore::PutAttempt(const AttemptRow& attempt) {
  Enqueue([a = attempt](sqlite3* db) {
    Stmt s(db,
           "INSERT OR REPLACE INTO attempts (job_id, attempt, master_addr, master_port, "
           "placement, scheduled_ms, ended_ms) VALUES (?,?,?,?,?,?,?)");
    s.Bind(a.job_id, a.attempt, a.master_addr, a.master_port, EncodePlacement(a.ranks),
           a.scheduled_ms, a.ended_ms);
    return s.Run(absl::StrCat("writing attempt ", a.attempt, " of ", a.job_id));
  });
}

void JobStore::AddEvent(const std::string& job_id, int64_t unix_ms, int attempt, v1::JobState state,
                        const std::string& message) {
  Enqueue([=](sqlite3* db) {
    Stmt s(db, "INSERT INTO events (job_id, unix_ms, attempt, state, message) VALUES (?,?,?,?,?)");
    s.Bind(job_id, unix_ms, attempt, v1::JobState_Name(state), message);
    return s.Run("writing an event of " + job_id);
  });
}

void JobStore::PutNode(const NodeRow& node) {
  Enqueue([n = node](sqlite3* db) {
    Stmt s(db,
           "INSERT OR REPLACE INTO nodes (id, hostname, address, slots, cpu_cores, devices, "
           "version, registered_ms, last_seen_ms, alive) VALUES (?,?,?,?,?,?,?,?,?,?)");
    s.Bind(n.id, n.hostname, n.address, n.slots, n.cpu_cores, absl::StrJoin(n.devices, "\n"),
           n.version, n.registered_ms, n.last_seen_ms, n.alive ? 1 : 0);
    return s.Run("writing node " + n.id);
  });
}

void JobStore::Enqueue(Op op) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  pending_.push_back(std::move(op));
  ++enqueued_;
}

bool JobStore::HasPending() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return !pending_.empty();
}

absl::Status JobStore::Sync() {
  uint64_t target;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    target = enqueued_;
  }
  std::lock_guard<std::mutex> commit(commit_mu_);
  if (committed_ >= target) return absl::OkStatus();  // a concurrent Sync took ours
  std::vector<Op> ops;
  uint64_t high;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    ops.swap(pending_);
    high = enqueued_;
  }
  absl::Status status = Exec(db_, "BEGIN IMMEDIATE;");
  for (size_t i = 0; status.ok() && i < ops.size(); ++i) status = ops[i](db_);
  if (status.ok()) status = Exec(db_, "COMMIT;");
  if (!status.ok()) Exec(db_, "ROLLBACK;").IgnoreError();
  committed_ = high;
  if (!status.ok()) LOG_ERROR("{} ({} writes dropped)", status.message(), ops.size());
  return status;
}

}  // namespace colossal::coordinator
