// The CUDA backend's host side, shared by every X_cuda.cu twin: error checks, the
// cudaStream_t a Stream carries, launch-shape helpers, and the backend's memory
// (backend_memory.h) registered for Backend::kCuda, present only where the process sees
// a driver and at least one device. Linking //kernels/common:cuda_backend is what makes
// the kernel harness run the CUDA twins (kernels/testing/twin_case.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/kernel.h"

namespace colossal::kernels::cuda {

// A failed CUDA call is a programmer error at the kernel level (bad pointer, bad launch):
// prints the call, file, line and CUDA's message, and aborts. The runtime's allocator
// reports out-of-memory as a Status before any kernel sees it.
[[noreturn]] void CudaFailed(const char* file, int line, const char* call, cudaError_t err);

// Whether a CUDA device is usable here (driver loaded, at least one device); cached.
bool DevicePresent();

inline cudaStream_t StreamOf(Stream stream) { return static_cast<cudaStream_t>(stream.cuda_stream); }

// Blocks of `threads` covering n elements (grid-stride kernels take the rest): at most
// `cap` blocks, at least 1.
inline unsigned GridFor(int64_t n, int threads, int64_t cap = 8192) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

}  // namespace colossal::kernels::cuda

#define COL_CUDA_CHECK(call)                                                         \
  do {                                                                               \
    const cudaError_t col_cuda_err_ = (call);                                        \
    if (col_cuda_err_ != cudaSuccess)                                                \
      ::colossal::kernels::cuda::CudaFailed(__FILE__, __LINE__, #call, col_cuda_err_); \
  } while (0)

// After a <<<...>>> launch: a bad configuration is reported at the launch site.
#define COL_CUDA_LAUNCHED() COL_CUDA_CHECK(cudaGetLastError())
