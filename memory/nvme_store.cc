// NvmeStore (nvme_store.h): Open's checks and up-front reservation, and the two engines
// behind one ticket table: a pread/pwrite thread pool, and io_uring with one completion
// thread. Which chunk lives in which slot, and when it moves, is the chunk manager's.
#include "memory/nvme_store.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "memory/allocator.h"
#include "runtime/base/check.h"
#include "runtime/base/env.h"

namespace colossal::memory {
namespace {

std::atomic<bool> force_threads{false};

// The most one pread / pwrite / SQE is asked to move: under Linux's per-call cap
// (MAX_RW_COUNT, 2 GiB - 4 KiB), and a multiple of kNvmeAlignment so that what is left
// after a short transfer stays aligned for O_DIRECT.
constexpr int64_t kMaxIoBytes = int64_t{1} << 30;

std::string ErrnoText(int err) {
  char buf[128];
  return strerror_r(err, buf, sizeof(buf));  // the GNU strerror_r (g++ defines _GNU_SOURCE)
}

enum class OpKind { kRead, kWrite };

// One I/O. Lives in the ticket table until its Wait; the node never moves (unordered_map
// keeps references across rehashing), so engines hold Op* while it is in flight.
struct Op {
  OpKind kind = OpKind::kRead;
  int64_t slot = 0;
  char* buf = nullptr;
  int64_t moved = 0;  // bytes transferred so far; touched only by the engine
  bool done = false;  // under mu_
  absl::Status status;
};

// The ticket table, the counters and the file; an engine supplies SubmitLocked.
class StoreBase : public NvmeStore {
 public:
  StoreBase(std::string path, int64_t slot_bytes, int64_t slots, int fd, std::string note)
      : NvmeStore(std::move(path), slot_bytes, slots), fd_(fd), note_(std::move(note)) {}
  // The engine's destructor has drained and stopped its threads by now.
  ~StoreBase() override { ::close(fd_); }

  Ticket Write(int64_t slot, const void* src) override {
    return Start(OpKind::kWrite, slot, const_cast<char*>(static_cast<const char*>(src)));
  }
  Ticket Read(int64_t slot, void* dst) override { return Start(OpKind::kRead, slot, static_cast<char*>(dst)); }

  absl::Status Wait(Ticket ticket) override {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = ops_.find(ticket);
    COL_CHECK_MSG(it != ops_.end(), "NvmeStore::Wait: ticket never issued or already waited for");
    Op& op = it->second;
    cv_.wait(lock, [&] { return op.done; });
    absl::Status status = std::move(op.status);
    ops_.erase(ticket);  // `it` may be stale: the table can rehash while we wait
    return status;
  }

  bool Done(Ticket ticket) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ops_.find(ticket);
    COL_CHECK_MSG(it != ops_.end(), "NvmeStore::Done: ticket never issued or already waited for");
    return it->second.done;
  }

  std::string engine_note() const override { return note_; }
  int64_t bytes_read() const override { return bytes_read_.load(); }
  int64_t bytes_written() const override { return bytes_written_.load(); }

 protected:
  // Hands a new op to the engine; mu_ is held.
  virtual void SubmitLocked(Op& op) = 0;

  int64_t OffsetOf(const Op& op) const { return op.slot * slot_bytes_ + op.moved; }
  // The next request of `op`: what is left of the slot, at most kMaxIoBytes.
  int64_t ChunkOf(const Op& op) const { return std::min(slot_bytes_ - op.moved, kMaxIoBytes); }

  // Records `bytes` more moved by `op`.
  void Count(Op& op, int64_t bytes) {
    op.moved += bytes;
    (op.kind == OpKind::kRead ? bytes_read_ : bytes_written_).fetch_add(bytes);
  }

  // "<path> (unlinked): read of slot 3 at offset 196608: <what>".
  std::string Where(const Op& op) const {
    return absl::StrCat(path_, " (unlinked): ", op.kind == OpKind::kRead ? "read" : "write", " of slot ", op.slot,
                        " at offset ", OffsetOf(op));
  }
  absl::Status ErrnoError(const Op& op, int err) const { return absl::ErrnoToStatus(err, Where(op)); }
  // A transfer of 0 bytes: the file is shorter than reserved (read) or refuses to grow.
  absl::Status NothingMoved(const Op& op) const {
    return absl::DataLossError(absl::StrCat(Where(op), ": ",
                                            op.kind == OpKind::kRead ? "unexpected end of file" : "wrote 0 bytes"));
  }

  // Marks `op` done with `status` and wakes its waiters; mu_ is held.
  void FinishLocked(Op& op, absl::Status status) {
    op.status = std::move(status);
    op.done = true;
    --in_flight_;
    cv_.notify_all();
  }

  // Blocks until nothing is in flight: the first step of an engine's destructor, so no
  // engine thread touches a buffer or the file after the store is gone.
  void Drain() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

  const int fd_;
  std::mutex mu_;
  std::condition_variable cv_;  // an op finished

 private:
  Ticket Start(OpKind kind, int64_t slot, char* buf) {
    COL_CHECK_MSG(slot >= 0 && slot < slots_, "NvmeStore: slot out of range");
    COL_CHECK_MSG(buf != nullptr && reinterpret_cast<uintptr_t>(buf) % kNvmeAlignment == 0,
                  "NvmeStore: buffer not aligned to kNvmeAlignment");
    std::lock_guard<std::mutex> lock(mu_);
    const Ticket ticket = next_ticket_++;
    Op& op = ops_[ticket];
    op.kind = kind;
    op.slot = slot;
    op.buf = buf;
    ++in_flight_;
    SubmitLocked(op);
    return ticket;
  }

  const std::string note_;
  std::unordered_map<Ticket, Op> ops_;  // issued and not yet waited for
  Ticket next_ticket_ = 1;
  int64_t in_flight_ = 0;  // issued and not done
  std::atomic<int64_t> bytes_read_{0}, bytes_written_{0};
};

// kThreads: `threads` workers take ops in issue order and loop pread / pwrite until the
// slot is moved (short transfers and EINTR retried).
class ThreadStore final : public StoreBase {
 public:
  ThreadStore(std::string path, int64_t slot_bytes, int64_t slots, int fd, std::string note, int threads)
      : StoreBase(std::move(path), slot_bytes, slots, fd, std::move(note)) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~ThreadStore() override {
    Drain();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  IoEngine engine() const override { return IoEngine::kThreads; }

 protected:
  void SubmitLocked(Op& op) override {
    queue_.push_back(&op);
    work_cv_.notify_one();
  }

 private:
  void Work() {
    while (true) {
      Op* op = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_, and Drain saw nothing in flight
        op = queue_.front();
        queue_.pop_front();
      }
      absl::Status status = Transfer(*op);
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(*op, std::move(status));
    }
  }

  absl::Status Transfer(Op& op) {
    while (op.moved < slot_bytes_) {
      char* p = op.buf + op.moved;
      const size_t n = static_cast<size_t>(ChunkOf(op));
      const ssize_t r = op.kind == OpKind::kRead ? ::pread(fd_, p, n, OffsetOf(op)) : ::pwrite(fd_, p, n, OffsetOf(op));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoError(op, errno);
      if (r == 0) return NothingMoved(op);
      Count(op, r);
    }
    return absl::OkStatus();
  }

  std::condition_variable work_cv_;  // queue_ grew or stop_ was set
  std::deque<Op*> queue_;            // under mu_
  bool stop_ = false;                // under mu_
  std::vector<std::thread> workers_;
};

struct RingDeleter {
  void operator()(io_uring* ring) const {
    io_uring_queue_exit(ring);
    delete ring;
  }
};
using Ring = std::unique_ptr<io_uring, RingDeleter>;

// A ring of `depth` entries on `fd`, proven by reading the first kNvmeAlignment bytes of
// the file through it (a sandbox may allow the ring but not the read); otherwise why not.
absl::StatusOr<Ring> MakeRing(int fd, int depth) {
  auto* raw = new io_uring;
  const int rc = io_uring_queue_init(static_cast<unsigned>(depth), raw, 0);
  if (rc < 0) {
    delete raw;
    return absl::UnavailableError(absl::StrCat("io_uring refused: ", ErrnoText(-rc)));
  }
  Ring ring(raw);
  void* probe = std::aligned_alloc(kNvmeAlignment, kNvmeAlignment);
  COL_CHECK(probe != nullptr);
  io_uring_sqe* sqe = io_uring_get_sqe(ring.get());
  io_uring_prep_read(sqe, fd, probe, kNvmeAlignment, 0);
  int res = io_uring_submit(ring.get());
  if (res < 0) {
    std::free(probe);  // not submitted
    return absl::UnavailableError(absl::StrCat("io_uring submit refused: ", ErrnoText(-res)));
  }
  io_uring_cqe* cqe = nullptr;
  do res = io_uring_wait_cqe(ring.get(), &cqe);
  while (res == -EINTR);
  // The read may still be out when the wait fails: the probe is leaked, not freed under it.
  if (res < 0) return absl::UnavailableError(absl::StrCat("io_uring wait refused: ", ErrnoText(-res)));
  res = cqe->res;
  io_uring_cqe_seen(ring.get(), cqe);
  std::free(probe);
  if (res < 0) return absl::UnavailableError(absl::StrCat("io_uring read refused: ", ErrnoText(-res)));
  if (res != kNvmeAlignment) {
    return absl::UnavailableError(absl::StrCat("io_uring read refused: ", res, " of ", kNvmeAlignment, " bytes"));
  }
  return ring;
}

// kIoUring: at most `depth` ops on the ring (the rest wait in issue order); submission
// under mu_, one completion thread reaps CQEs and resubmits short transfers.
class UringStore final : public StoreBase {
 public:
  UringStore(std::string path, int64_t slot_bytes, int64_t slots, int fd, std::string note, Ring ring, int depth)
      : StoreBase(std::move(path), slot_bytes, slots, fd, std::move(note)), ring_(std::move(ring)), depth_(depth) {
    reaper_ = std::thread([this] { Reap(); });
  }
  ~UringStore() override {
    Drain();
    {
      // A NOP with no Op tells the reaper to return; the ring has room, nothing is on it.
      std::lock_guard<std::mutex> lock(mu_);
      io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
      COL_CHECK(sqe != nullptr);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, nullptr);
      SubmitRingLocked();
    }
    reaper_.join();
  }
  IoEngine engine() const override { return IoEngine::kIoUring; }

 protected:
  void SubmitLocked(Op& op) override {
    if (on_ring_ < depth_) {
      ++on_ring_;
      IssueLocked(op);
    } else {
      waiting_.push_back(&op);
    }
  }

 private:
  // Puts the next request of `op` on the ring. Never more than depth_ SQEs are out (one
  // per op on the ring), so there is always an entry free.
  void IssueLocked(Op& op) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    COL_CHECK(sqe != nullptr);
    char* p = op.buf + op.moved;
    const unsigned n = static_cast<unsigned>(ChunkOf(op));
    if (op.kind == OpKind::kRead) {
      io_uring_prep_read(sqe, fd_, p, n, static_cast<uint64_t>(OffsetOf(op)));
    } else {
      io_uring_prep_write(sqe, fd_, p, n, static_cast<uint64_t>(OffsetOf(op)));
    }
    io_uring_sqe_set_data(sqe, &op);
    SubmitRingLocked();
  }

  // The ring worked at Open (MakeRing read through it), so a failing io_uring_enter now is
  // a broken ring, not a bad request: nothing sensible is left to do with the op.
  void SubmitRingLocked() {
    while (true) {
      const int rc = io_uring_submit(ring_.get());
      if (rc >= 0) return;
      COL_CHECK_MSG(rc == -EINTR || rc == -EAGAIN || rc == -EBUSY, ErrnoText(-rc).c_str());
      std::this_thread::yield();
    }
  }

  void Reap() {
    while (true) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(ring_.get(), &cqe);
      if (rc == -EINTR) continue;
      COL_CHECK_MSG(rc == 0, ErrnoText(-rc).c_str());
      Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(ring_.get(), cqe);
      if (op == nullptr) return;  // the destructor's NOP
      std::lock_guard<std::mutex> lock(mu_);
      CompleteLocked(*op, res);
    }
  }

  void CompleteLocked(Op& op, int res) {
    if (res == -EINTR || res == -EAGAIN) return IssueLocked(op);
    if (res > 0) {
      Count(op, res);
      if (op.moved < slot_bytes_) return IssueLocked(op);  // a short transfer: the rest
    }
    FinishLocked(op, res < 0 ? ErrnoError(op, -res) : res == 0 ? NothingMoved(op) : absl::OkStatus());
    --on_ring_;
    if (!waiting_.empty()) {
      Op* next = waiting_.front();
      waiting_.pop_front();
      ++on_ring_;
      IssueLocked(*next);
    }
  }

  Ring ring_;
  const int depth_;
  int on_ring_ = 0;            // ops with an SQE out; under mu_
  std::deque<Op*> waiting_;    // issued while the ring was full; under mu_
  std::thread reaper_;
};

// "/x" + "colossal-chunks-XXXXXX" without a doubled slash.
std::string JoinPath(const std::string& dir, const std::string& name) {
  return !dir.empty() && dir.back() == '/' ? dir + name : absl::StrCat(dir, "/", name);
}

absl::Status NoSpace(const std::string& dir, int64_t slot_bytes, int64_t slots, int64_t free_bytes) {
  return absl::ResourceExhaustedError(absl::StrCat("memory.nvme_dir ", dir, ": needs ",
                                                   FormatBytes(slot_bytes * slots), " for ", slots, " chunks of ",
                                                   FormatBytes(slot_bytes), ", ",
                                                   free_bytes < 0 ? "unknown" : FormatBytes(free_bytes), " free"));
}

// What the filesystem under `dir` gives an unprivileged writer; -1 when statvfs fails.
int64_t FreeBytes(const std::string& dir) {
  struct statvfs vfs;
  if (::statvfs(dir.c_str(), &vfs) != 0) return -1;
  return static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
}

absl::Status CheckDir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("memory.nvme_dir ", dir, ": ",
                     err == ENOENT ? "does not exist (create it, or point memory.nvme_dir at a local NVMe disk)"
                                   : ErrnoText(err)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("memory.nvme_dir ", dir, ": is not a directory"));
  }
  // access() answers for the real uid, as root too: root passes a 0500 directory (it can
  // write there) but not a read-only mount.
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("memory.nvme_dir ", dir, ": not writable (", ErrnoText(err), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

void ForceThreadEngineForTesting(bool on) { force_threads.store(on); }

absl::StatusOr<std::unique_ptr<NvmeStore>> NvmeStore::Open(const std::string& dir, int64_t slot_bytes, int64_t slots,
                                                          int threads) {
  if (slot_bytes <= 0 || slot_bytes % kNvmeAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("memory.nvme_dir ", dir, ": slot size ", slot_bytes,
                                                   " bytes is not a positive multiple of ", kNvmeAlignment));
  }
  if (slots <= 0 || slots > std::numeric_limits<int64_t>::max() / slot_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("memory.nvme_dir ", dir, ": ", slots, " slots of ", slot_bytes,
                                                   " bytes: want at least 1, and a total that fits 64 bits"));
  }
  if (threads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("memory.nvme_dir ", dir, ": ", threads, " I/O threads, want >= 1"));
  }
  // Why the thread pool, when it is forced; empty: io_uring where the kernel allows it.
  std::string why_threads;
  if (force_threads.load()) why_threads = "threads forced for testing";
  if (std::optional<std::string> io = base::GetEnv(base::kEnvNvmeIo); io.has_value() && why_threads.empty()) {
    if (*io == "threads") {
      why_threads = absl::StrCat(std::string(base::kEnvNvmeIo), "=threads");
    } else if (*io != "auto") {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(base::kEnvNvmeIo), "=", *io, ": want threads or auto"));
    }
  }

  if (absl::Status s = CheckDir(dir); !s.ok()) return s;
  const int64_t total = slot_bytes * slots;
  // Refuse before reserving anything: trying would fill a disk others share, if briefly.
  if (const int64_t free_bytes = FreeBytes(dir); free_bytes >= 0 && total > free_bytes) {
    return NoSpace(dir, slot_bytes, slots, free_bytes);
  }

  std::string path = JoinPath(dir, "colossal-chunks-XXXXXX");
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string what = absl::StrCat("memory.nvme_dir ", dir, ": cannot create a file there: ", ErrnoText(err));
    return err == ENOSPC || err == EDQUOT ? absl::ResourceExhaustedError(what) : absl::FailedPreconditionError(what);
  }
  // Scratch only: the name goes now, the space when the last descriptor closes.
  ::unlink(path.c_str());

  int rc;
  do rc = ::posix_fallocate(fd, 0, total);
  while (rc == EINTR);
  if (rc != 0) {
    ::close(fd);
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG) return NoSpace(dir, slot_bytes, slots, FreeBytes(dir));
    return absl::ErrnoToStatus(rc, absl::StrCat("memory.nvme_dir ", dir, ": reserving ", FormatBytes(total)));
  }

  // O_DIRECT after the reservation: glibc's posix_fallocate emulation (filesystems
  // without fallocate) writes single bytes, which O_DIRECT would refuse.
  std::string io_mode = "O_DIRECT";
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_DIRECT) != 0) {
    const int err = errno;
    io_mode = absl::StrCat("buffered I/O (O_DIRECT refused: ", ErrnoText(err), ")");
  }

  if (why_threads.empty()) {
    absl::StatusOr<Ring> ring = MakeRing(fd, threads);
    if (ring.ok()) {
      return std::unique_ptr<NvmeStore>(std::make_unique<UringStore>(
          std::move(path), slot_bytes, slots, fd, absl::StrCat("io_uring, depth ", threads, ", ", io_mode),
          std::move(*ring), threads));
    }
    why_threads = std::string(ring.status().message());
  }
  return std::unique_ptr<NvmeStore>(std::make_unique<ThreadStore>(
      std::move(path), slot_bytes, slots, fd,
      absl::StrCat(why_threads, "; ", threads, " pread/pwrite threads, ", io_mode), threads));
}

}  // namespace colossal::memory
