// Rank log files: positional writes, listing in attempt/rank order, reads and tails.
#include "runtime/coordinator/log_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace colossal::coordinator {
namespace fs = std::filesystem;
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// "<prefix><n><suffix>" → n, or -1.
int NumberIn(const std::string& name, const std::string& prefix, const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  int n = -1;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(digits, &n)) {
    return -1;
  }
  return n;
}

}  // namespace

std::string LogStore::PathOf(const std::string& job_id, int attempt, int rank) const {
  return absl::StrCat(root_, "/", job_id, "/attempt-", attempt, "/rank-", rank, ".log");
}

absl::Status LogStore::Write(const v1::LogChunk& chunk) {
  if (chunk.offset() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("log chunk offset ", chunk.offset()));
  }
  const std::string path = PathOf(chunk.job_id(), chunk.attempt(), chunk.rank());
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("creating the log directory of ", path, ": ", ec.message()));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("opening " + path);
  const std::string& data = chunk.data();
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, chunk.offset() + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status status = Errno("writing " + path);
      ::close(fd);
      return status;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;
  }
  changed_.notify_all();
  return absl::OkStatus();
}

std::vector<LogStore::File> LogStore::List(const std::string& job_id, int rank) const {
  std::vector<File> files;
  std::error_code ec;
  for (const fs::directory_entry& dir : fs::directory_iterator(fs::path(root_) / job_id, ec)) {
    const int attempt = NumberIn(dir.path().filename().string(), "attempt-", "");
    if (attempt < 0) continue;
    std::error_code ec2;
    for (const fs::directory_entry& f : fs::directory_iterator(dir.path(), ec2)) {
      const int r = NumberIn(f.path().filename().string(), "rank-", ".log");
      if (r < 0 || (rank >= 0 && r != rank)) continue;
      std::error_code ec3;
      const auto size = fs::file_size(f.path(), ec3);
      files.push_back({attempt, r, f.path().string(), ec3 ? 0 : static_cast<int64_t>(size)});
    }
  }
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) {
    return std::make_pair(a.attempt, a.rank) < std::make_pair(b.attempt, b.rank);
  });
  return files;
}

absl::StatusOr<std::string> LogStore::Read(const std::string& path, int64_t offset,
                                           int64_t max_bytes) const {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("opening " + path);
  std::string out(static_cast<size_t>(std::max<int64_t>(max_bytes, 0)), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = Errno("reading " + path);
      ::close(fd);
      return status;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

std::string LogStore::Tail(const std::string& job_id, int attempt, int rank,
                           int64_t max_bytes) const {
  const std::string path = PathOf(job_id, attempt, rank);
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) return "";
  const int64_t from = std::max<int64_t>(0, size - max_bytes);
  absl::StatusOr<std::string> text = Read(path, from, size - from);
  return text.ok() ? *text : "";
}

uint64_t LogStore::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

uint64_t LogStore::WaitForWrite(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return generation_ != seen || shutdown_; });
  return generation_;
}

void LogStore::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  changed_.notify_all();
}

}  // namespace colossal::coordinator
