// cuBLASLt for the CUDA twins: one handle per device and one workspace per stream, made on
// first use and kept for the process. A stream's GEMMs run one after another, so a
// workspace per stream is never shared by two GEMMs in flight; two streams (compute and
// communication) get two. This is the library state of the execution environment: the
// executor's streams reach it through the Stream every kernel takes.
#pragma once

#include <cublasLt.h>

#include <cstddef>

#include "kernels/common/kernel.h"

namespace colossal::kernels::cuda {

// Hopper wants 32 MiB for its split-K and stream-K algorithms (cuBLAS documentation).
inline constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

struct BlasContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The handle and workspace for GEMMs ordered on `stream` (the current device's). Thread-safe.
const BlasContext& BlasFor(Stream stream);

[[noreturn]] void CublasFailed(const char* file, int line, const char* call, cublasStatus_t status);

}  // namespace colossal::kernels::cuda

#define COL_CUBLAS_CHECK(call)                                                           \
  do {                                                                                   \
    const cublasStatus_t col_cublas_status_ = (call);                                    \
    if (col_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::colossal::kernels::cuda::CublasFailed(__FILE__, __LINE__, #call, col_cublas_status_); \
  } while (0)
