// Deterministic parallel sums for the optimizer CPU twins (internal to kernels/optim/).
// [0, n) is cut into fixed blocks of kReduceBlock elements counted from the start of the
// segment; OpenMP threads run `body` on whole blocks, and the calling thread adds the
// blocks' partial sums in block order. The result depends on n and the data only: never
// on the thread count or the schedule, so 2 threads reproduce 1 thread bit for bit.
// `body` may also write elements of its block (fused update-and-reduce loops).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace colossal::kernels::optim_internal {

// 64 KiB of fp32 per block: big enough that the per-block bookkeeping is noise, small
// enough that 124M elements give thousands of blocks to balance over threads.
inline constexpr int64_t kReduceBlock = int64_t{1} << 14;

// Below this many elements the work runs on the calling thread alone.
inline constexpr int64_t kParallelMin = int64_t{1} << 15;

// out[k] = Σ over blocks of the k-th sum that body(begin, end, sums) stores for block
// [begin, end) (body overwrites sums[0..K)). out is overwritten.
// In body, copy captured pointers and scalars into locals before the `omp simd` loop:
// GCC 12 does not vectorise a loop that loads them through the lambda's closure (the
// sums then run ~4x slower, scalar).
template <int K, typename Body>
void BlockedSums(int64_t n, double* out, Body&& body) {
  const int64_t num_blocks = (n + kReduceBlock - 1) / kReduceBlock;
  constexpr int64_t kStackBlocks = 64;
  std::array<double, K * kStackBlocks> stack_partials;
  std::vector<double> heap_partials;
  double* partials = stack_partials.data();
  if (num_blocks > kStackBlocks) {
    heap_partials.resize(K * num_blocks);
    partials = heap_partials.data();
  }
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < num_blocks; ++b) {
    const int64_t begin = b * kReduceBlock;
    const int64_t end = std::min(n, begin + kReduceBlock);
    body(begin, end, partials + b * K);
  }
  for (int k = 0; k < K; ++k) out[k] = 0.0;
  for (int64_t b = 0; b < num_blocks; ++b)
    for (int k = 0; k < K; ++k) out[k] += partials[b * K + k];
}

}  // namespace colossal::kernels::optim_internal
