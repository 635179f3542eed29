// Where bytes come from: an Allocator per kind of memory (host, pinned host, device),
// each counting what it holds by purpose (parameters, gradients, optimizer state,
// activations, ...), with the peak, so an out-of-memory error names the bytes asked, the
// peak and what holds the memory, and metrics report the device peak. Buffer owns one
// allocation (RAII, move-only).
//
// The host allocator is built in. Device and pinned-host allocators come from the backend
// that has them: the CUDA plugin (kernels/common/cuda_plugin.h) registers a factory when
// it loads, and DeviceAllocator(kind, device) makes (once) the allocator of one device.
// The CUDA one is a caching, stream-ordered pool (memory/cuda_allocator.cc).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/common/kernel.h"

namespace colossal::memory {

enum class MemoryKind : uint8_t { kHost, kPinned, kDevice };
std::string_view MemoryKindName(MemoryKind kind);

// What an allocation is for: the counters an out-of-memory error and the metrics report.
enum class Purpose : uint8_t {
  kParameters,
  kGradients,
  kOptimizerState,
  kActivations,  // the executor's arena
  kGraphState,   // kState values (KV caches, running statistics)
  kCommunication,  // data-parallel and ZeRO buffers
  kWorkspace,    // library workspaces, kernel scratch
  kChunks,       // Gemini's paged model state (chunk_manager.h): blocks that hold
                 // parameters, gradients or moments by turns
  kOther,
};
inline constexpr int kNumPurposes = 9;
std::string_view PurposeName(Purpose purpose);

struct AllocatorStats {
  int64_t used = 0;       // bytes held by live allocations
  int64_t peak = 0;       // the most `used` has been
  int64_t reserved = 0;   // bytes the allocator holds from the system (>= used when caching)
  int64_t allocations = 0;  // live allocations
  std::array<int64_t, kNumPurposes> by_purpose{};  // `used`, split by purpose
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual MemoryKind kind() const = 0;
  // "host", "cuda:0", ...: where an error says the memory was asked.
  virtual std::string name() const = 0;
  // The order allocations and frees are made in (a device allocator's stream); kernels
  // that fill a new buffer run on it.
  virtual kernels::Stream stream() const { return {}; }

  // `bytes` (> 0) zero-filled, aligned to at least 256 bytes; RESOURCE_EXHAUSTED when the
  // memory (or the allocator's limit) is exhausted: "<name>: out of memory asking <bytes>
  // for <purpose>: peak <p>, in use <u> (<purpose> <bytes>, ...)[, limit <l>]".
  absl::StatusOr<void*> Allocate(int64_t bytes, Purpose purpose);
  // `ptr` from Allocate with the same `bytes` and `purpose`; null is a no-op.
  void Free(void* ptr, int64_t bytes, Purpose purpose);

  AllocatorStats stats() const;
  // Refuse allocations that would take `used` above `bytes` (0: no limit): a memory
  // budget (tests, Gemini's tiers) enforced with the same error as the device's own.
  void set_limit(int64_t bytes) { limit_.store(bytes); }

 protected:
  // The memory itself: null when exhausted. `bytes` is already rounded to 256.
  virtual void* Get(int64_t bytes) = 0;
  virtual void Put(void* ptr, int64_t bytes) = 0;
  virtual void Zero(void* ptr, int64_t bytes) = 0;
  virtual int64_t Reserved() const { return used_.load(); }

 private:
  std::string OutOfMemory(int64_t bytes, Purpose purpose) const;

  std::atomic<int64_t> used_{0}, peak_{0}, allocations_{0}, limit_{0};
  std::array<std::atomic<int64_t>, kNumPurposes> by_purpose_{};
};

// Rounds `bytes` up to the allocation granularity (256).
int64_t AllocationSize(int64_t bytes);

// The process's host allocator (aligned_alloc: 4096-byte aligned when the size is a
// multiple of 4096, as direct I/O needs, else 256; pages touched when zero-filled, so no
// page faults inside a timed step).
Allocator& HostAllocator();

// Registered by a backend: makes the allocator of `device` for `kind` (kDevice or kPinned).
using AllocatorFactory = absl::StatusOr<Allocator*> (*)(MemoryKind kind, int device);
void RegisterAllocatorFactory(kernels::Backend backend, AllocatorFactory factory);
// The allocator of `device` on `backend` for `kind` (made once, kept for the process);
// FAILED_PRECONDITION when the backend registered none (its plugin is not loaded).
absl::StatusOr<Allocator*> DeviceAllocator(kernels::Backend backend, MemoryKind kind, int device);

// One allocation. Move-only; frees on destruction. An empty Buffer has data() == nullptr.
class Buffer {
 public:
  Buffer() = default;
  // The allocation, or the allocator's error.
  static absl::StatusOr<Buffer> Make(Allocator& allocator, int64_t bytes, Purpose purpose);
  // Host memory that must exist (as `new` would): aborts with the error on failure.
  static Buffer Host(int64_t bytes, Purpose purpose);

  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  int64_t bytes() const { return bytes_; }
  Allocator* allocator() const { return allocator_; }

 private:
  void Reset();
  Allocator* allocator_ = nullptr;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
  Purpose purpose_ = Purpose::kOther;
};

// "1.5 GiB", "512 B": for messages.
std::string FormatBytes(int64_t bytes);

}  // namespace colossal::memory
