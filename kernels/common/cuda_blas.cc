#include "kernels/common/cuda_blas.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "kernels/common/cuda_backend.h"

namespace colossal::kernels::cuda {

void CublasFailed(const char* file, int line, const char* call, cublasStatus_t status) {
  std::fprintf(stderr, "cuBLAS call failed at %s:%d: %s: status %d\n", file, line, call,
               static_cast<int>(status));
  std::fflush(stderr);
  std::abort();
}

const BlasContext& BlasFor(Stream stream) {
  static std::mutex mu;
  static std::map<int, cublasLtHandle_t> handles;  // per device
  // Per (device, stream); the contexts never move (unique_ptr), so references stay valid.
  static std::map<std::pair<int, cudaStream_t>, std::unique_ptr<BlasContext>> contexts;
  int device = 0;
  COL_CUDA_CHECK(cudaGetDevice(&device));
  const cudaStream_t s = StreamOf(stream);
  std::lock_guard<std::mutex> lock(mu);
  auto it = contexts.find({device, s});
  if (it != contexts.end()) return *it->second;
  cublasLtHandle_t& handle = handles[device];
  if (handle == nullptr) COL_CUBLAS_CHECK(cublasLtCreate(&handle));
  auto ctx = std::make_unique<BlasContext>();
  ctx->handle = handle;
  ctx->workspace_bytes = kBlasWorkspaceBytes;
  COL_CUDA_CHECK(cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
  return *contexts.emplace(std::make_pair(device, s), std::move(ctx)).first->second;
}

}  // namespace colossal::kernels::cuda
