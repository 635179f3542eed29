// Place: where a rank's model state lives and how the runtime reaches it — a backend,
// the allocator of one of its devices, the compute stream kernels run on, and the copies
// between that memory and the host. Model code (the parameter store, the optimizer, data
// parallelism, checkpoints, initialisation) allocates through a Place and never
// dereferences its memory unless on_host(): on a device it stages through host buffers
// with CopyToHost / CopyFromHost.
//
// The host Place (Place::Host(): the CPU backend, the host allocator) is what every job
// uses until resources.device: cuda runs; its copies are memcpy and its stream does
// nothing, so the CPU path is unchanged by going through it.
//
// Ordering: Copy and Zero are enqueued on stream() after the kernels already there;
// CopyToHost and CopyFromHost wait for the stream first (what the host reads is what the
// kernels wrote; what it writes no kernel still reads) and return when the bytes have
// moved. Not thread-safe beyond what the stream itself allows.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/common/backend_memory.h"
#include "kernels/common/kernel.h"
#include "memory/allocator.h"

namespace colossal::memory {

class Place {
 public:
  // The CPU backend with the host allocator.
  static Place Host();
  // The same memory and kernels, but on_host() false: every caller takes its device path
  // (staging through host buffers, stream-ordered copies) on host memory. Tests hold the
  // device path to the host path with it (the results must be bit-identical), on machines
  // without a device.
  static Place HostAsDevice();
  // Device `device` of `backend` (its allocator from DeviceAllocator) with kernels on
  // `stream` (whose backend must be `backend`); FAILED_PRECONDITION when the backend's
  // memory or allocator is not registered here (no plugin, no device).
  static absl::StatusOr<Place> Device(kernels::Backend backend, int device, kernels::Stream stream);

  kernels::Backend backend() const { return stream_.backend; }
  int device() const { return device_; }
  bool on_host() const {
    return !as_device_ && (backend() == kernels::Backend::kCpu || backend() == kernels::Backend::kRef);
  }
  Allocator& allocator() const { return *allocator_; }
  kernels::Stream stream() const { return stream_; }

  // `bytes` zero-filled bytes for `purpose` (the allocator's RESOURCE_EXHAUSTED names
  // the bytes, peak and holders).
  absl::StatusOr<Buffer> Allocate(int64_t bytes, Purpose purpose) const;

  void Copy(void* dst, const void* src, int64_t bytes) const;
  void Zero(void* dst, int64_t bytes) const;
  void CopyToHost(void* host_dst, const void* src, int64_t bytes) const;
  void CopyFromHost(void* dst, const void* host_src, int64_t bytes) const;
  // Every kernel and copy enqueued on the stream done.
  void Synchronize() const;

  // Host staging of `n` floats of this place's memory, for host code that reads or fills
  // them (checkpoints, initialisation):
  //   HostView: `src` itself on the host; else a copy of it appended to `staged` (which
  //             must outlive the returned pointer).
  //   FillFromHost: runs fill(p) with p = `dst` on the host, else p = `staging` (resized),
  //             copied to `dst` when fill succeeds; returns fill's status.
  const float* HostView(const float* src, int64_t n, std::deque<std::vector<float>>& staged) const;
  absl::Status FillFromHost(float* dst, int64_t n, std::vector<float>& staging,
                            const std::function<absl::Status(float*)>& fill) const;

 private:
  Place(kernels::Stream stream, int device, Allocator* allocator, const kernels::BackendMemory* memory)
      : stream_(stream), device_(device), allocator_(allocator), memory_(memory) {}
  kernels::Stream stream_;
  int device_ = 0;
  Allocator* allocator_ = nullptr;
  const kernels::BackendMemory* memory_ = nullptr;
  bool as_device_ = false;
};

}  // namespace colossal::memory
