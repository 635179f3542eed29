// Durable file I/O shared by checkpoints (safetensors, state.json) and token files:
// whole-file reads that map errno to Status, atomic file replacement (write
// `path.tmp`, fsync, rename, fsync the directory) and directory fsync.
// Owns no file format: callers decide what the bytes mean.
// (Not checkpoint-specific; a candidate for runtime/base once that folder wants it.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossal::checkpoint {

// The Status for a failed system call: code from errno (ENOENT → NotFound, EACCES →
// PermissionDenied, ENOSPC → ResourceExhausted, ...), message "<what>: <strerror>".
absl::Status ErrnoError(int err, std::string_view what);

// A file written so that `path` holds either what it held before or the complete new
// content, never a prefix. Create() opens `path + ".tmp"` (truncating a stale one),
// Append() writes through to it, Commit() fsyncs it, renames it over `path` and fsyncs
// the parent directory.
//
// Failure contract: when any step fails, or the object is destroyed without a
// successful Commit(), the tmp file is removed and nothing new is left at `path`. A
// previous file at `path` survives every failure before the rename; the only step
// after the rename is the directory fsync, and if that fails `path` is unlinked too,
// so an error from Commit() always means "nothing at path".
//
// Not thread-safe; one writer per path at a time (the tmp name is fixed).
class AtomicFile {
 public:
  static absl::StatusOr<AtomicFile> Create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // Abandons (closes and unlinks the tmp file) unless committed.

  // Appends bytes. After a failure the file is abandoned and every later call
  // returns the same error.
  absl::Status Append(const void* data, size_t size);
  absl::Status Append(std::string_view bytes) { return Append(bytes.data(), bytes.size()); }

  absl::Status Commit();

  const std::string& path() const { return path_; }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  AtomicFile(std::string path, std::string tmp_path, int fd)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {}
  void Abandon();

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;  // -1 once committed or abandoned.
  int64_t bytes_written_ = 0;
  absl::Status error_;
};

// Writes `contents` to `path` through AtomicFile.
absl::Status WriteFileAtomic(const std::string& path, std::string_view contents);

// fsyncs a directory so that renames and unlinks inside it are durable.
absl::Status FsyncDir(const std::string& dir);

// The directory holding `path` ("." when it has no slash).
std::string ParentDir(const std::string& path);

// Reads the whole file. NotFound when it does not exist; other errors from errno.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace colossal::checkpoint
