// Softmax cross-entropy CUDA twins (softmax_xent.h). A row is owned by one warp when
// v <= kWarpMaxV (eight rows per 256-thread block) and by one 256-thread block otherwise;
// rows are walked grid-stride. Within a row each thread takes elements
// lane, lane + group, ... : a scalar head up to the row's first 16-byte boundary (rows
// start anywhere, since ld is arbitrary), float4 in the middle, a scalar tail (the
// backward goes scalar throughout when logits and dlogits differ in alignment mod 16).
// Forward: one pass over the row; each thread keeps an online (max m, Σ exp(x − m)) pair,
// rescaling its sum only when its maximum rises (one expf per element), then the pairs
// merge across the warp (__shfl_xor_sync) and, in a block, across warps through shared
// memory, in a fixed order: deterministic. lse = m + log Σ and loss = (m − x[t]) + log Σ
// are formed in double from the fp32 sum, as the CPU twin does.
// Backward: one elementwise pass, dlogits[j] (=|+=) dloss · (exp(x[j] − lse) − [j == t]);
// each element is read, then written, by the same thread, so dlogits == logits is safe.
// Ignored rows (t < 0) are zeroed (=) or left alone (+=); padding columns [v, ld) are
// never touched. No scratch memory.
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/softmax_xent/softmax_xent.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
// Rows up to this wide go one per warp; wider ones one per block.
constexpr int64_t kWarpMaxV = 1024;
constexpr unsigned kFullMask = 0xffffffffu;

// Visits every j in [0, v) owned by thread `lane` of a group of `group` threads: with
// `vec`, f4(j) covers the 16-byte-aligned j..j+3 in the middle of the row and f1(j) the
// head and tail; without, f1(j) covers all.
template <typename F4, typename F1>
__device__ inline void ForRow(const float* row, int64_t v, int lane, int group, bool vec, F4 f4, F1 f1) {
  if (!vec) {
    for (int64_t j = lane; j < v; j += group) f1(j);
    return;
  }
  const int64_t mis = static_cast<int64_t>((reinterpret_cast<uintptr_t>(row) & 15) / 4);
  int64_t head = mis == 0 ? 0 : 4 - mis;  // elements before the first 16-byte boundary
  if (head > v) head = v;
  const int64_t quads = (v - head) / 4;
  if (lane < head) f1(lane);
  for (int64_t q = lane; q < quads; q += group) f4(head + 4 * q);
  for (int64_t j = head + 4 * quads + lane; j < v; j += group) f1(j);
}

// Online log-sum-exp state: s = Σ exp(x − m) over the elements seen. m starts at −FLT_MAX
// (not −inf) so that −inf logits and empty states never form −inf − (−inf).
struct MaxSum {
  float m;
  float s;
};

__device__ inline void Push(MaxSum& a, float x) {
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f;
    a.m = x;
  } else {
    a.s += expf(x - a.m);
  }
}

__device__ inline MaxSum Merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ inline MaxSum WarpMerge(MaxSum a) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const MaxSum b{__shfl_xor_sync(kFullMask, a.m, offset), __shfl_xor_sync(kFullMask, a.s, offset)};
    a = Merge(a, b);
  }
  return a;  // the same on every lane: each step merges a symmetric pair
}

// The row's state on every thread of the block. Called by all threads of the block.
__device__ inline MaxSum BlockMerge(MaxSum a, MaxSum* shared /* [32] */) {
  a = WarpMerge(a);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the previous row's reads of `shared` are done
  if (lane == 0) shared[warp] = a;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  MaxSum b = lane < warps ? shared[lane] : MaxSum{-FLT_MAX, 0.0f};
  return WarpMerge(b);
}

template <bool kWarpPerRow>
__global__ void ForwardKernel(const float* logits, int64_t ld, const int32_t* targets, float* loss, float* lse,
                              int64_t n, int64_t v) {
  __shared__ MaxSum shared[32];
  const int lane = kWarpPerRow ? (threadIdx.x & 31) : threadIdx.x;
  const int group = kWarpPerRow ? 32 : blockDim.x;
  const int64_t first = kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5)
                                    : static_cast<int64_t>(blockIdx.x);
  const int64_t step = kWarpPerRow ? static_cast<int64_t>(gridDim.x) * kWarpsPerBlock : gridDim.x;
  for (int64_t i = first; i < n; i += step) {  // uniform over the warp (block)
    const float* x = logits + i * ld;
    MaxSum a{-FLT_MAX, 0.0f};
    ForRow(
        x, v, lane, group, /*vec=*/true,
        [&](int64_t j) {
          const float4 q = *reinterpret_cast<const float4*>(x + j);
          Push(a, q.x), Push(a, q.y), Push(a, q.z), Push(a, q.w);
        },
        [&](int64_t j) { Push(a, x[j]); });
    a = kWarpPerRow ? WarpMerge(a) : BlockMerge(a, shared);
    if (lane == 0) {
      const double log_sum = log(static_cast<double>(a.s));
      const float row_lse = static_cast<float>(static_cast<double>(a.m) + log_sum);
      lse[i] = row_lse;
      const int32_t t = targets[i];
      loss[i] = t < 0    ? 0.0f
                : t >= v ? row_lse
                         : static_cast<float>(static_cast<double>(a.m) - static_cast<double>(x[t]) + log_sum);
    }
  }
}

template <bool kWarpPerRow, bool kAccumulate>
__global__ void BackwardKernel(const float* logits, int64_t ld, const float* lse, const int32_t* targets,
                               const float* dloss, float* dlogits, int64_t n, int64_t v, bool vec) {
  const int lane = kWarpPerRow ? (threadIdx.x & 31) : threadIdx.x;
  const int group = kWarpPerRow ? 32 : blockDim.x;
  const int64_t first = kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5)
                                    : static_cast<int64_t>(blockIdx.x);
  const int64_t step = kWarpPerRow ? static_cast<int64_t>(gridDim.x) * kWarpsPerBlock : gridDim.x;
  for (int64_t i = first; i < n; i += step) {
    // Not __restrict__: dx may be x. Each element below is loaded before it is stored.
    const float* x = logits + i * ld;
    float* dx = dlogits + i * ld;
    const int32_t t = targets[i];
    if (t < 0) {
      if constexpr (!kAccumulate) {
        ForRow(
            dx, v, lane, group, vec, [&](int64_t j) { *reinterpret_cast<float4*>(dx + j) = make_float4(0, 0, 0, 0); },
            [&](int64_t j) { dx[j] = 0.0f; });
      }
      continue;
    }
    const float d = dloss[i];
    const float l = lse[i];
    // t >= v: the target is in another rank's block, so no j equals it.
    const auto grad = [&](float xj, int64_t j) {
      const float p = expf(xj - l);
      return d * (j == t ? p - 1.0f : p);
    };
    ForRow(
        x, v, lane, group, vec,
        [&](int64_t j) {
          const float4 q = *reinterpret_cast<const float4*>(x + j);
          float4 g = make_float4(grad(q.x, j), grad(q.y, j + 1), grad(q.z, j + 2), grad(q.w, j + 3));
          if constexpr (kAccumulate) {
            const float4 o = *reinterpret_cast<const float4*>(dx + j);
            g.x += o.x, g.y += o.y, g.z += o.z, g.w += o.w;
          }
          *reinterpret_cast<float4*>(dx + j) = g;
        },
        [&](int64_t j) {
          const float g = grad(x[j], j);
          if constexpr (kAccumulate) {
            dx[j] += g;
          } else {
            dx[j] = g;
          }
        });
  }
}

// Launch shape for n rows: blocks (capped; the kernels walk rows grid-stride).
unsigned RowBlocks(int64_t n, bool warp_per_row) {
  return cuda::GridFor(n, warp_per_row ? kWarpsPerBlock : 1, /*cap=*/65535);
}

void SoftmaxXentForwardCuda(const float* logits, int64_t ld, const int32_t* targets, float* loss, float* lse,
                            int64_t n, int64_t v, Stream stream) {
  COL_CHECK(n == 0 || (v >= 1 && ld >= v));
  if (n <= 0) return;
  const bool warp_per_row = v <= kWarpMaxV;
  const unsigned blocks = RowBlocks(n, warp_per_row);
  if (warp_per_row) {
    ForwardKernel<true><<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(logits, ld, targets, loss, lse, n, v);
  } else {
    ForwardKernel<false><<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(logits, ld, targets, loss, lse, n, v);
  }
  COL_CUDA_LAUNCHED();
}

template <bool kAccumulate>
void LaunchBackward(const float* logits, int64_t ld, const float* lse, const int32_t* targets, const float* dloss,
                    float* dlogits, int64_t n, int64_t v, Stream stream) {
  // ForRow splits at the 16-byte boundaries of x's row; the float4 path serves dx's row
  // too only when both sit at the same offset within 16 bytes (always so in place). Rows
  // differ by ld floats in both, so one test on the bases covers every row.
  const bool vec = ((reinterpret_cast<uintptr_t>(logits) ^ reinterpret_cast<uintptr_t>(dlogits)) & 15) == 0;
  const bool warp_per_row = v <= kWarpMaxV;
  const unsigned blocks = RowBlocks(n, warp_per_row);
  if (warp_per_row) {
    BackwardKernel<true, kAccumulate>
        <<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(logits, ld, lse, targets, dloss, dlogits, n, v, vec);
  } else {
    BackwardKernel<false, kAccumulate>
        <<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(logits, ld, lse, targets, dloss, dlogits, n, v, vec);
  }
  COL_CUDA_LAUNCHED();
}

void SoftmaxXentBackwardCuda(const float* logits, int64_t ld, const float* lse, const int32_t* targets,
                             const float* dloss, float* dlogits, int64_t n, int64_t v, Accumulate accumulate,
                             Stream stream) {
  COL_CHECK(n == 0 || (v >= 1 && ld >= v));
  if (n <= 0) return;
  if (accumulate == Accumulate::kYes) {
    LaunchBackward<true>(logits, ld, lse, targets, dloss, dlogits, n, v, stream);
  } else {
    LaunchBackward<false>(logits, ld, lse, targets, dloss, dlogits, n, v, stream);
  }
}

const Registrar<SoftmaxXentForwardFn> kForward(SoftmaxXentForwardTable(), Backend::kCuda, DType::kF32,
                                               &SoftmaxXentForwardCuda);
const Registrar<SoftmaxXentBackwardFn> kBackward(SoftmaxXentBackwardTable(), Backend::kCuda, DType::kF32,
                                                 &SoftmaxXentBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
