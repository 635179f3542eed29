// NvmeStore: the NVMe tier of the Gemini chunk manager — one scratch file of equal-size
// slots (one chunk each) in memory.nvme_dir, read and written asynchronously whole slot
// at a time.
//
// Start-up does everything a run could otherwise fail on later: the directory must exist
// and be writable, and the whole file is reserved up front (fallocate), so a disk too
// small fails here — naming the directory, the bytes needed and the bytes free — and not
// mid-step. The file is unlinked as soon as it is open: a killed worker leaves nothing
// behind (its chunks are scratch; checkpoints are elsewhere).
//
// I/O engine, chosen at Open and reported by engine() / engine_note():
//   kIoUring  io_uring (liburing) when the kernel and the sandbox allow it (probed by
//             creating a ring),
//   kThreads  a pool of threads doing pread / pwrite otherwise.
// Direct I/O (O_DIRECT) where the filesystem takes it, buffered I/O otherwise (also in
// the note). Buffers passed to Read / Write must be aligned to kNvmeAlignment and hold
// slot_bytes (a multiple of kNvmeAlignment).
//
// Thread-safe: Read, Write, Wait and Done may be called from any thread. A slot must not
// be read and written at once (the chunk manager orders its moves).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace colossal::memory {

inline constexpr int64_t kNvmeAlignment = 4096;

enum class IoEngine { kIoUring, kThreads };

class NvmeStore {
 public:
  // An I/O in flight (0 is never a ticket).
  using Ticket = uint64_t;

  // A file of `slots` slots of `slot_bytes` bytes each in `dir`. `threads` sizes the
  // thread pool of the kThreads engine (and caps the ring's depth under io_uring).
  // Errors: FAILED_PRECONDITION when `dir` does not exist, is not a directory or is not
  // writable; RESOURCE_EXHAUSTED when the reservation does not fit (dir, bytes needed,
  // bytes free); INVALID_ARGUMENT for a slot size that is not a positive multiple of
  // kNvmeAlignment.
  static absl::StatusOr<std::unique_ptr<NvmeStore>> Open(const std::string& dir, int64_t slot_bytes,
                                                        int64_t slots, int threads = 2);
  virtual ~NvmeStore() = default;

  // Starts writing `src` (slot_bytes) into slot `slot` / reading slot `slot` into `dst`.
  virtual Ticket Write(int64_t slot, const void* src) = 0;
  virtual Ticket Read(int64_t slot, void* dst) = 0;
  // Blocks until the I/O is done; its error (the path, the slot, the errno text) when it
  // failed. Each ticket is waited for once.
  virtual absl::Status Wait(Ticket ticket) = 0;
  // Whether Wait would return at once.
  virtual bool Done(Ticket ticket) = 0;

  virtual IoEngine engine() const = 0;
  // One line for the log: the engine, direct or buffered I/O, and why (e.g. "io_uring
  // refused: Operation not permitted; 2 pread/pwrite threads, O_DIRECT").
  virtual std::string engine_note() const = 0;

  int64_t slot_bytes() const { return slot_bytes_; }
  int64_t slots() const { return slots_; }
  const std::string& path() const { return path_; }
  // Bytes moved so far (completed I/O).
  virtual int64_t bytes_read() const = 0;
  virtual int64_t bytes_written() const = 0;

 protected:
  NvmeStore(std::string path, int64_t slot_bytes, int64_t slots)
      : path_(std::move(path)), slot_bytes_(slot_bytes), slots_(slots) {}
  std::string path_;
  int64_t slot_bytes_ = 0;
  int64_t slots_ = 0;
};

// Force the kThreads engine (tests of the fallback; COLOSSAL_NVME_IO=threads does the same
// for a run).
void ForceThreadEngineForTesting(bool on);

}  // namespace colossal::memory
