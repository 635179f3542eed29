// The CUDA backend's allocators, registered for Backend::kCuda when the plugin loads:
//   kDevice  a caching, stream-ordered pool per device: its own cudaMemPool whose release
//            threshold is unbounded, so freed memory stays reserved for the next request
//            instead of going back to the driver; requests are cudaMallocFromPoolAsync on
//            the allocator's own non-blocking stream, zero-filled there.
//   kPinned  page-locked host memory (cudaHostAlloc), for copies that overlap compute.
// The runtime allocates at set-up and frees at tear-down (every per-step byte is planned in
// the executor's arena), so Get and Put synchronise: a new buffer is zeroed before any
// other stream sees it, and a freed one is idle on every stream before the pool reuses it.
// Kernel scratch (cudaMallocAsync in a few twins) comes from the device's default pool and
// is not counted here.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/common/cuda_backend.h"
#include "memory/allocator.h"

namespace colossal::memory {
namespace {

class CudaDeviceAllocator final : public Allocator {
 public:
  explicit CudaDeviceAllocator(int device) : device_(device) {
    COL_CUDA_CHECK(cudaSetDevice(device));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    COL_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
    uint64_t keep = UINT64_MAX;
    COL_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
    COL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  MemoryKind kind() const override { return MemoryKind::kDevice; }
  std::string name() const override { return absl::StrCat("cuda:", device_); }
  kernels::Stream stream() const override { return {kernels::Backend::kCuda, stream_}; }

 protected:
  void* Get(int64_t bytes) override {
    COL_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    const cudaError_t err = cudaMallocFromPoolAsync(&p, static_cast<size_t>(bytes), pool_, stream_);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky: the device is still usable
      return nullptr;
    }
    COL_CUDA_CHECK(err);
    return p;
  }
  void Put(void* ptr, int64_t) override {
    COL_CUDA_CHECK(cudaSetDevice(device_));
    COL_CUDA_CHECK(cudaDeviceSynchronize());  // no stream still reads or writes it
    COL_CUDA_CHECK(cudaFreeAsync(ptr, stream_));
    COL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void Zero(void* ptr, int64_t bytes) override {
    COL_CUDA_CHECK(cudaMemsetAsync(ptr, 0, static_cast<size_t>(bytes), stream_));
    COL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  int64_t Reserved() const override {
    uint64_t reserved = 0;
    COL_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved));
    return static_cast<int64_t>(reserved);
  }

 private:
  int device_;
  cudaMemPool_t pool_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

class CudaPinnedAllocator final : public Allocator {
 public:
  MemoryKind kind() const override { return MemoryKind::kPinned; }
  std::string name() const override { return "pinned host"; }

 protected:
  void* Get(int64_t bytes) override {
    void* p = nullptr;
    const cudaError_t err = cudaHostAlloc(&p, static_cast<size_t>(bytes), cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    COL_CUDA_CHECK(err);
    return p;
  }
  void Put(void* ptr, int64_t) override { COL_CUDA_CHECK(cudaFreeHost(ptr)); }
  void Zero(void* ptr, int64_t bytes) override { std::memset(ptr, 0, static_cast<size_t>(bytes)); }
};

absl::StatusOr<Allocator*> MakeCudaAllocator(MemoryKind kind, int device) {
  if (!kernels::cuda::DevicePresent()) return absl::FailedPreconditionError("no CUDA device in this process");
  int count = 0;
  COL_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA device ", device, " does not exist (this node has ", count,
                                                      ")"));
  }
  switch (kind) {
    case MemoryKind::kDevice: return new CudaDeviceAllocator(device);
    case MemoryKind::kPinned: return new CudaPinnedAllocator;
    case MemoryKind::kHost: return &HostAllocator();
  }
  return absl::InvalidArgumentError("unknown memory kind");
}

const bool kRegistered = [] {
  RegisterAllocatorFactory(kernels::Backend::kCuda, &MakeCudaAllocator);
  return true;
}();

}  // namespace
}  // namespace colossal::memory
