// KV-cache append CUDA twin: one grid-stride kernel over the B·C columns of the new
// tokens, each thread copying one element of k and v into row p of the caches (and of q
// into the packed queries); p is read from device memory by every thread, so the host
// never waits for the step's position.
#include <cstdint>

#include "kernels/attention/kv_cache.h"
#include "kernels/common/cuda_backend.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void AppendKernel(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                             int64_t batch, int64_t max_len, int64_t C) {
  const int64_t pos = position[0];
  const bool in_cache = pos >= 0 && pos < max_len;  // outside: no cache row is written (kv_cache.h)
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < batch * C; i += stride) {
    const int64_t b = i / C, c = i % C;
    const float* row = qkv + b * 3 * C;
    if (q != nullptr) q[i] = row[c];
    if (in_cache) {
      k_cache[(b * max_len + pos) * C + c] = row[C + c];
      v_cache[(b * max_len + pos) * C + c] = row[2 * C + c];
    }
  }
}

void KvCacheAppendCuda(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                       int64_t batch, int64_t max_len, int64_t channels, Stream stream) {
  const int64_t n = batch * channels;
  if (n == 0) return;
  AppendKernel<<<cuda::GridFor(n, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(qkv, position, k_cache, v_cache,
                                                                                      q, batch, max_len, channels);
  COL_CUDA_LAUNCHED();
}

const Registrar<KvCacheAppendFn> kAppend(KvCacheAppendTable(), Backend::kCuda, DType::kF32, &KvCacheAppendCuda);

}  // namespace
}  // namespace colossal::kernels
