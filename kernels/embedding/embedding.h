// Embedding lookup and its gradient.
//   forward:  out[i, :] = table[ids[i], :]                       for i < n (overwrite)
//   backward: dtable (=|+=) scatter: dtable[ids[i], :] += dout[i, :]
// With Accumulate::kNo the whole dtable [rows, c] is zeroed first, so rows that no id
// references end at 0. An id >= rows names a row outside this block of a table split by
// rows over ranks (the vocab-parallel embedding): its output row is 0 and it contributes
// no gradient. Negative ids are a caller bug (caught by COL_DCHECK).
// The CPU backward partitions columns across threads, so it is deterministic and the
// sum order per element is the order of i (bit-identical to the reference's order).
// Tolerance against the reference: forward exact; backward atol = rtol = 1e-6 · n_dup
// where n_dup is the largest repeat count of an id (fp32 vs double sums).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// The forward is a gather: exact.
inline Tolerance EmbeddingForwardTolerance() { return {0.0, 0.0}; }
// The backward sums up to `max_repeat` rows of dout (plus the old value) in fp32 against
// the double sum.
inline Tolerance EmbeddingBackwardTolerance(int64_t max_repeat) {
  const double t = 1e-6 * static_cast<double>(max_repeat < 1 ? 1 : max_repeat);
  return {t, t};
}

using EmbeddingForwardFn = void(const int32_t* ids, const float* table, float* out, int64_t n,
                                int64_t rows, int64_t c, Stream stream);
Dispatch<EmbeddingForwardFn>& EmbeddingForwardTable();

using EmbeddingBackwardFn = void(const int32_t* ids, const float* dout, float* dtable,
                                 int64_t n, int64_t rows, int64_t c, Accumulate accumulate,
                                 Stream stream);
Dispatch<EmbeddingBackwardFn>& EmbeddingBackwardTable();

template <typename T>
void EmbeddingForwardRef(const int32_t* ids, const T* table, T* out, int64_t n, int64_t rows,
                         int64_t c);
template <typename T>
void EmbeddingBackwardRef(const int32_t* ids, const T* dout, T* dtable, int64_t n, int64_t rows,
                          int64_t c, Accumulate accumulate);

inline void EmbeddingForward(const int32_t* ids, const float* table, float* out, int64_t n,
                             int64_t rows, int64_t c, Stream stream = {}) {
  EmbeddingForwardTable().Get(stream.backend, DType::kF32)(ids, table, out, n, rows, c, stream);
}
inline void EmbeddingBackward(const int32_t* ids, const float* dout, float* dtable, int64_t n,
                              int64_t rows, int64_t c, Accumulate accumulate,
                              Stream stream = {}) {
  EmbeddingBackwardTable().Get(stream.backend, DType::kF32)(ids, dout, dtable, n, rows, c,
                                                            accumulate, stream);
}

}  // namespace colossal::kernels
