// CudaCheck / NcclCheck: result codes to absl::Status.
#include "parallel/comm/nccl/nccl_check.h"

#include "absl/strings/str_cat.h"

namespace colossal::parallel {

absl::Status CudaCheck(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  std::string message =
      absl::StrCat(call, ": ", cudaGetErrorString(error), " (", cudaGetErrorName(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCallRequiresNewerDriver:
      return absl::FailedPreconditionError(message);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidResourceHandle:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status NcclCheck(ncclResult_t result, const char* call) {
  if (result == ncclSuccess) return absl::OkStatus();
  std::string message = absl::StrCat(call, ": ", ncclGetErrorString(result), " (nccl result ",
                                     static_cast<int>(result), ")");
  // The last error of this thread, with NCCL's detail (which call, which transport).
  const char* detail = ncclGetLastError(nullptr);
  if (detail != nullptr && detail[0] != '\0') absl::StrAppend(&message, ": ", detail);
  switch (result) {
    case ncclRemoteError:
    case ncclSystemError:
    case ncclInProgress:
      return absl::UnavailableError(message);
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(message);
    case ncclInvalidUsage:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace colossal::parallel
