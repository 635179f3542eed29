// Embedding CPU twins: the forward copies rows in parallel over i; the backward zeroes
// dtable (kNo) with the elementwise CPU Fill, then scatter-adds with columns partitioned
// across threads, each thread walking i in order over its column range: no atomics,
// deterministic, thread-count independent, same per-element order as the reference.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

// Below this many floats moved a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
// Column ranges are multiples of 16 floats (64 bytes): threads never share a line of a
// 64-byte-aligned dtable row when c is a multiple of 16 (c = 384, 768).
constexpr int64_t kColumnGrain = 16;

bool UseThreads(int64_t work) {
  return work >= kParallelMin && omp_get_max_threads() > 1 && !omp_in_parallel();
}

void EmbeddingForwardCpu(const int32_t* ids, const float* table, float* out, int64_t n,
                         int64_t rows, int64_t c, Stream) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  if (c == 0) return;
#pragma omp parallel for schedule(static) if (UseThreads(n * c))
  for (int64_t i = 0; i < n; ++i) {
    COL_DCHECK(ids[i] >= 0);
    if (ids[i] < rows) {
      std::memcpy(out + i * c, table + static_cast<int64_t>(ids[i]) * c, c * sizeof(float));
    } else {
      std::memset(out + i * c, 0, c * sizeof(float));  // a row of another rank's block
    }
  }
}

void EmbeddingBackwardCpu(const int32_t* ids, const float* dout, float* dtable, int64_t n,
                          int64_t rows, int64_t c, Accumulate accumulate, Stream) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  if (c == 0) return;
  if (accumulate == Accumulate::kNo) {
    // The elementwise CPU twin: parallel, streaming stores for large tables.
    FillTable().Get(Backend::kCpu, DType::kF32)(dtable, rows * c, 0.0f, Stream{});
  }
  if (n == 0) return;
  const int64_t max_parts = UseThreads(n * c) ? omp_get_max_threads() : 1;
  const int64_t parts = std::max<int64_t>(1, std::min(max_parts, c / kColumnGrain));
#pragma omp parallel for schedule(static, 1) num_threads(parts) if (parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t j0 = part == 0 ? 0 : (c * part / parts) / kColumnGrain * kColumnGrain;
    const int64_t j1 =
        part == parts - 1 ? c : (c * (part + 1) / parts) / kColumnGrain * kColumnGrain;
    const int64_t width = j1 - j0;
    for (int64_t i = 0; i < n; ++i) {
      COL_DCHECK(ids[i] >= 0);
      if (ids[i] >= rows) continue;  // a row of another rank's block
      float* dst = dtable + static_cast<int64_t>(ids[i]) * c + j0;
      const float* src = dout + i * c + j0;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) dst[j] += src[j];
    }
  }
}

const Registrar<EmbeddingForwardFn> kForward(EmbeddingForwardTable(), Backend::kCpu,
                                             DType::kF32, &EmbeddingForwardCpu);
const Registrar<EmbeddingBackwardFn> kBackward(EmbeddingBackwardTable(), Backend::kCpu,
                                               DType::kF32, &EmbeddingBackwardCpu);

}  // namespace
}  // namespace colossal::kernels
