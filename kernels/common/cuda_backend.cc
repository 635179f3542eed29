// The CUDA backend's memory (plain cudaMalloc / cudaMemcpy on the default stream order:
// the kernel harness and tests use it; the runtime allocates through memory/ instead)
// and its presence probe.
#include "kernels/common/cuda_backend.h"

#include <cstdio>
#include <cstdlib>

#include "kernels/common/backend_memory.h"

namespace colossal::kernels::cuda {

void CudaFailed(const char* file, int line, const char* call, cudaError_t err) {
  std::fprintf(stderr, "CUDA call failed at %s:%d: %s: %s (%s)\n", file, line, call,
               cudaGetErrorString(err), cudaGetErrorName(err));
  std::fflush(stderr);
  std::abort();
}

bool DevicePresent() {
  static const bool present = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      (void)cudaGetLastError();  // leave no error behind for the next launch check
      return false;
    }
    return count > 0;
  }();
  return present;
}

namespace {

void* Allocate(int64_t bytes) {
  void* p = nullptr;
  COL_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(bytes > 0 ? bytes : 1)));
  return p;
}
void Release(void* p) { COL_CUDA_CHECK(cudaFree(p)); }
void ToDevice(void* dst, const void* src, int64_t bytes) {
  if (bytes > 0) COL_CUDA_CHECK(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
}
void ToHost(void* dst, const void* src, int64_t bytes) {
  if (bytes > 0) COL_CUDA_CHECK(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
}
void Synchronize(Stream stream) { COL_CUDA_CHECK(cudaStreamSynchronize(StreamOf(stream))); }
void CopyOn(void* dst, const void* src, int64_t bytes, Stream stream) {
  if (bytes > 0) {
    COL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, StreamOf(stream)));
  }
}
void ZeroOn(void* dst, int64_t bytes, Stream stream) {
  if (bytes > 0) COL_CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(bytes), StreamOf(stream)));
}

const bool kRegistered = [] {
  RegisterBackendMemory(Backend::kCuda,
                        {Allocate, Release, ToDevice, ToHost, Synchronize, DevicePresent, CopyOn, ZeroOn});
  return true;
}();

}  // namespace
}  // namespace colossal::kernels::cuda
