// KV-cache append CPU twin: the attention_decode op's former host copies, one std::copy
// per row (B rows of C floats each for k, v and q: a few KiB per step, so one thread).
#include <algorithm>
#include <cstdint>

#include "kernels/attention/kv_cache.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

void KvCacheAppendCpu(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                      int64_t batch, int64_t max_len, int64_t channels, Stream) {
  const int64_t C = channels;
  // The CPU backend's memory is the host's: the position is read here.
  const int64_t pos = position[0];
  COL_CHECK_MSG(pos >= 0 && pos < max_len, "kv_cache_append: position outside the cache");
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = qkv + b * 3 * C;
    std::copy(row + C, row + 2 * C, k_cache + (b * max_len + pos) * C);
    std::copy(row + 2 * C, row + 3 * C, v_cache + (b * max_len + pos) * C);
    if (q != nullptr) std::copy(row, row + C, q + b * C);
  }
}

const Registrar<KvCacheAppendFn> kAppend(KvCacheAppendTable(), Backend::kCpu, DType::kF32, &KvCacheAppendCpu);

}  // namespace
}  // namespace colossal::kernels
