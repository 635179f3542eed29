// Appending one generation step to a KV cache: the fused qkv projection of each
// sequence's new token is split into its query (packed for AttentionDecode) and its key
// and value, written at the token's position in the caches. Owns only these copies; the
// attention over the cache is AttentionDecode (attention.h).
//
//   qkv [B, 3C]: row b (3C apart) = q | k | v of sequence b's new token.
//   position: one int32 on the stream's backend, read there (a device value on a device
//     backend): p, the new token's position, the same for every sequence.
//   k_cache, v_cache [B, max_len, C]: row p of sequence b overwritten with its k and v;
//     every other row is left as it is.
//   q [B, C]: overwritten with the queries, or nullptr for none (with B = 1 the query
//     is already contiguous: qkv itself is the [1, C] query).
// A position outside [0, max_len) is a caller's bug: the host twins COL_CHECK it; the
// CUDA twin cannot stop the host, so it writes no cache row (AttentionDecode's output is
// then NaN). Pure copies: every twin is exact.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"

namespace colossal::kernels {

using KvCacheAppendFn = void(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                             int64_t batch, int64_t max_len, int64_t channels, Stream stream);
Dispatch<KvCacheAppendFn>& KvCacheAppendTable();

// The specification, on host memory, with the position given on the host.
template <typename T>
void KvCacheAppendRef(const T* qkv, int64_t position, T* k_cache, T* v_cache, T* q, int64_t batch, int64_t max_len,
                      int64_t channels);

inline void KvCacheAppend(const float* qkv, const int32_t* position, float* k_cache, float* v_cache, float* q,
                          int64_t batch, int64_t max_len, int64_t channels, Stream stream = {}) {
  KvCacheAppendTable().Get(stream.backend, DType::kF32)(qkv, position, k_cache, v_cache, q, batch, max_len, channels,
                                                        stream);
}

}  // namespace colossal::kernels
