// KV-cache append specification: element-by-element copies; also defines the
// kv_cache_append dispatch table and registers the float ref twin.
#include "kernels/attention/kv_cache.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

Dispatch<KvCacheAppendFn>& KvCacheAppendTable() {
  static Dispatch<KvCacheAppendFn> table("kv_cache_append");
  return table;
}

template <typename T>
void KvCacheAppendRef(const T* qkv, int64_t position, T* k_cache, T* v_cache, T* q, int64_t batch, int64_t max_len,
                      int64_t channels) {
  const int64_t C = channels;
  COL_CHECK_MSG(position >= 0 && position < max_len, "kv_cache_append: position outside the cache");
  for (int64_t b = 0; b < batch; ++b) {
    const T* row = qkv + b * 3 * C;
    for (int64_t c = 0; c < C; ++c) {
      if (q != nullptr) q[b * C + c] = row[c];
      k_cache[(b * max_len + position) * C + c] = row[C + c];
      v_cache[(b * max_len + position) * C + c] = row[2 * C + c];
    }
  }
}

template void KvCacheAppendRef<float>(const float*, int64_t, float*, float*, float*, int64_t, int64_t, int64_t);
template void KvCacheAppendRef<double>(const double*, int64_t, double*, double*, double*, int64_t, int64_t, int64_t);

namespace {
void KvCacheAppendRefTwin(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                          int64_t batch, int64_t max_len, int64_t channels, Stream) {
  KvCacheAppendRef(qkv, static_cast<int64_t>(position[0]), k_cache, v_cache, q, batch, max_len, channels);
}
const Registrar<KvCacheAppendFn> kAppend(KvCacheAppendTable(), Backend::kRef, DType::kF32, &KvCacheAppendRefTwin);
}  // namespace

}  // namespace colossal::kernels
