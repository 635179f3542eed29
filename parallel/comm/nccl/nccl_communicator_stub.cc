// The NCCL backend in a build without CUDA or NCCL (third_party/cuda found neither):
// the factory says so. Owns nothing; nccl_communicator.cc is the real backend.
#include "parallel/comm/nccl/nccl_communicator.h"

namespace colossal::parallel {

bool NcclBackendBuilt() { return false; }

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Bootstrap& bootstrap,
                                                                     const CommOptions& options,
                                                                     int device) {
  return absl::UnimplementedError(
      "NCCL backend not built: Bazel found no CUDA toolkit with NCCL (set CUDA_PATH or "
      "NCCL_PATH and run `bazel sync --configure`; see third_party/cuda/cuda_configure.bzl)");
}

}  // namespace colossal::parallel
