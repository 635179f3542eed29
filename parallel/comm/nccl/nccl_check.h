// CUDA and NCCL result codes as absl::Status: the failing call, the library's own
// message and a code that says whose fault it is. Owns no state; the NCCL backend and its
// tests use it. Needs the CUDA and NCCL headers (built only where third_party/cuda found
// them).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "absl/status/status.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {

// OK for cudaSuccess; else e.g. "cudaMalloc(&p, 64): out of memory (cudaErrorMemoryAllocation)".
// Codes: out of memory → RESOURCE_EXHAUSTED; no device, no or too old a driver →
// FAILED_PRECONDITION; invalid value/device → INVALID_ARGUMENT; anything else INTERNAL.
absl::Status CudaCheck(cudaError_t error, const char* call);

// OK for ncclSuccess; else e.g. "ncclAllReduce(...): remote process exited or there was a
// network error (ncclRemoteError): <ncclGetLastError>". Codes: ncclRemoteError,
// ncclSystemError → UNAVAILABLE (a peer or the network); ncclInvalidArgument →
// INVALID_ARGUMENT; ncclInvalidUsage → FAILED_PRECONDITION; ncclInProgress → UNAVAILABLE
// (callers settle it first); anything else INTERNAL.
absl::Status NcclCheck(ncclResult_t result, const char* call);

}  // namespace colossal::parallel

// Return the Status of a failed CUDA / NCCL call from the enclosing function.
#define CUDA_RETURN_IF_ERROR(call) RETURN_IF_ERROR(::colossal::parallel::CudaCheck((call), #call))
#define NCCL_RETURN_IF_ERROR(call) RETURN_IF_ERROR(::colossal::parallel::NcclCheck((call), #call))
