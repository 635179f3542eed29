// Layer norm CUDA twins (layer_norm.h).
// Forward: a row is owned by one warp when cols <= kWarpMaxCols (eight rows per
// 256-thread block) and by one 256-thread block otherwise; rows are walked grid-stride.
// Three passes over the row (the second and third hit L1/L2): Σ (x − x0), then
// Σ ((x − x0) − mean')², then y; shifting by the row's first element, as the CPU twin
// does, keeps rows with a large common offset exact. Sums are fp32 per thread, then a
// warp butterfly (__shfl_xor_sync) and, in a block, a fixed-order pass over the warps'
// partials in shared memory. float4 where cols % 4 == 0 and x, y, weight, bias are
// 16-byte aligned; scalar otherwise.
// Backward: grid of B = min(rows, kMaxBackwardBlocks, scratch budget) blocks; block b
// owns the contiguous rows [rows·b/B, rows·(b+1)/B) and walks them one at a time, its
// threads striding over the columns. Per row: one pass forms Σ g and Σ g·xhat (g = dy·w)
// and adds dy·xhat and dy into the block's per-column partials; a block reduction; a
// second pass writes dx (= or +=). Each thread owns the same columns in every row, so
// the partials need no atomics and no barriers: they live in shared memory (2·cols
// floats, when that fits in kMaxSharedPartials bytes) or else directly in the block's
// row of the scratch buffer. The partials go to stream-ordered scratch [B, 2, cols]
// (cudaMallocAsync), then a column pass sums the B partials of each column in block
// order, in double, and applies dparam_accumulate. Every order is fixed by (rows, cols):
// dweight and dbias are bitwise reproducible, on any device.
#include <cmath>
#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/layer_norm/layer_norm.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kWarpMaxCols = 1024;
constexpr unsigned kFullMask = 0xffffffffu;
// Backward: at most this many row blocks, and partials of at most kScratchBudget bytes.
constexpr int64_t kMaxBackwardBlocks = 1024;
constexpr int64_t kScratchBudget = int64_t{32} << 20;
// Per-column partials stay in shared memory up to this size (under the 48 KiB a block
// may take without opting in, with room for the static reduction buffer).
constexpr int64_t kMaxSharedPartials = 40 << 10;

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// kVec floats at p (p 16-byte aligned when kVec == 4).
template <int kVec>
struct Floats {
  float v[kVec];
};
template <int kVec>
__device__ inline Floats<kVec> Load(const float* p) {
  if constexpr (kVec == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    return {{t.x, t.y, t.z, t.w}};
  } else {
    return {{*p}};
  }
}
template <int kVec>
__device__ inline void Store(float* p, const Floats<kVec>& f) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
  } else {
    *p = f.v[0];
  }
}

__device__ inline float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;  // the same on every lane: each step adds a symmetric pair
}

// The block's total of (a, b) on every thread. All threads of the block must call it.
__device__ inline float2 BlockSum2(float a, float b, float2* shared /* [32] */) {
  a = WarpSum(a);
  b = WarpSum(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the previous call's reads of `shared` are done
  if (lane == 0) shared[warp] = make_float2(a, b);
  __syncthreads();
  const float2 p = lane < static_cast<int>(blockDim.x >> 5) ? shared[lane] : make_float2(0.0f, 0.0f);
  return make_float2(WarpSum(p.x), WarpSum(p.y));
}

template <bool kWarpPerRow>
__device__ inline float GroupSum(float v, float2* shared) {
  if constexpr (kWarpPerRow) {
    return WarpSum(v);
  } else {
    return BlockSum2(v, 0.0f, shared).x;
  }
}

template <int kVec, bool kWarpPerRow>
__global__ void ForwardKernel(const float* x, const float* weight, const float* bias, float* y, float* mean,
                              float* rstd, int64_t rows, int64_t cols, float eps) {
  __shared__ float2 shared[32];
  const int lane = kWarpPerRow ? (threadIdx.x & 31) : threadIdx.x;
  const int group = kWarpPerRow ? 32 : blockDim.x;
  const int64_t first = kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5)
                                    : static_cast<int64_t>(blockIdx.x);
  const int64_t step = kWarpPerRow ? static_cast<int64_t>(gridDim.x) * kWarpsPerBlock : gridDim.x;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = first; r < rows; r += step) {  // uniform over the warp (block)
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float x0 = xr[0];
    float s1 = 0.0f;
    for (int64_t c = static_cast<int64_t>(lane) * kVec; c < cols; c += static_cast<int64_t>(group) * kVec) {
      const Floats<kVec> xv = Load<kVec>(xr + c);
#pragma unroll
      for (int k = 0; k < kVec; ++k) s1 += xv.v[k] - x0;
    }
    const float mean_shifted = GroupSum<kWarpPerRow>(s1, shared) * inv_cols;
    float s2 = 0.0f;
    for (int64_t c = static_cast<int64_t>(lane) * kVec; c < cols; c += static_cast<int64_t>(group) * kVec) {
      const Floats<kVec> xv = Load<kVec>(xr + c);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float d = (xv.v[k] - x0) - mean_shifted;
        s2 += d * d;
      }
    }
    const float s = 1.0f / sqrtf(GroupSum<kWarpPerRow>(s2, shared) * inv_cols + eps);
    for (int64_t c = static_cast<int64_t>(lane) * kVec; c < cols; c += static_cast<int64_t>(group) * kVec) {
      const Floats<kVec> xv = Load<kVec>(xr + c), wv = Load<kVec>(weight + c), bv = Load<kVec>(bias + c);
      Floats<kVec> out;
#pragma unroll
      for (int k = 0; k < kVec; ++k) out.v[k] = ((xv.v[k] - x0) - mean_shifted) * s * wv.v[k] + bv.v[k];
      Store<kVec>(yr + c, out);
    }
    if (lane == 0) {
      mean[r] = x0 + mean_shifted;
      rstd[r] = s;
    }
  }
}

// partials: [gridDim.x, 2, cols], block b's dweight partial then its dbias partial.
template <int kVec, bool kDxAccumulate>
__global__ void BackwardKernel(const float* dy, const float* x, const float* weight, const float* mean,
                               const float* rstd, float* dx, float* partials, int64_t rows, int64_t cols,
                               bool shared_partials) {
  extern __shared__ float4 dynamic_shared[];  // 2·cols floats when shared_partials
  __shared__ float2 reduce[32];
  float* block_partials = partials + static_cast<int64_t>(blockIdx.x) * 2 * cols;
  float* dw = shared_partials ? reinterpret_cast<float*>(dynamic_shared) : block_partials;
  float* db = dw + cols;
  const int64_t begin = static_cast<int64_t>(threadIdx.x) * kVec;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * kVec;
  // Every column below is touched only by the thread that owns it, in this order.
  for (int64_t c = begin; c < cols; c += stride) {
    Store<kVec>(dw + c, Floats<kVec>{});
    Store<kVec>(db + c, Floats<kVec>{});
  }
  const int64_t r0 = rows * blockIdx.x / gridDim.x, r1 = rows * (blockIdx.x + 1) / gridDim.x;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = r0; r < r1; ++r) {  // uniform over the block
    const float* dyr = dy + r * cols;
    const float* xr = x + r * cols;
    const float m = mean[r], s = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t c = begin; c < cols; c += stride) {
      const Floats<kVec> dyv = Load<kVec>(dyr + c), xv = Load<kVec>(xr + c), wv = Load<kVec>(weight + c);
      Floats<kVec> dwv = Load<kVec>(dw + c), dbv = Load<kVec>(db + c);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float xhat = (xv.v[k] - m) * s;
        // Rounded as a product (no fma contraction), so the second pass sees the same g.
        const float g = __fmul_rn(dyv.v[k], wv.v[k]);
        sum_g += g;
        sum_gx += g * xhat;
        dwv.v[k] += dyv.v[k] * xhat;
        dbv.v[k] += dyv.v[k];
      }
      Store<kVec>(dw + c, dwv);
      Store<kVec>(db + c, dbv);
    }
    const float2 sums = BlockSum2(sum_g, sum_gx, reduce);
    const float mean_g = sums.x * inv_cols, mean_gx = sums.y * inv_cols;
    float* dxr = dx + r * cols;
    for (int64_t c = begin; c < cols; c += stride) {
      const Floats<kVec> dyv = Load<kVec>(dyr + c), xv = Load<kVec>(xr + c), wv = Load<kVec>(weight + c);
      Floats<kVec> out;
      if constexpr (kDxAccumulate) {
        out = Load<kVec>(dxr + c);
      } else {
        out = Floats<kVec>{};
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float xhat = (xv.v[k] - m) * s;
        const float g = __fmul_rn(dyv.v[k], wv.v[k]);
        out.v[k] += s * ((g - mean_g) - xhat * mean_gx);
      }
      Store<kVec>(dxr + c, out);
    }
  }
  if (shared_partials) {
    for (int64_t c = begin; c < cols; c += stride) {
      Store<kVec>(block_partials + c, Load<kVec>(dw + c));
      Store<kVec>(block_partials + cols + c, Load<kVec>(db + c));
    }
  }
}

// dweight[c], dbias[c] (=|+=) the sum over blocks of partials[b, :, c], in block order.
__global__ void ColumnReduceKernel(const float* partials, int64_t blocks, int64_t cols, float* dweight,
                                   float* dbias, bool accumulate) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += stride) {
    double dw = 0.0, db = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      dw += static_cast<double>(partials[b * 2 * cols + c]);
      db += static_cast<double>(partials[b * 2 * cols + cols + c]);
    }
    if (accumulate) {
      dw += static_cast<double>(dweight[c]);
      db += static_cast<double>(dbias[c]);
    }
    dweight[c] = static_cast<float>(dw);
    dbias[c] = static_cast<float>(db);
  }
}

template <int kVec>
void LaunchForward(const float* x, const float* weight, const float* bias, float* y, float* mean, float* rstd,
                   int64_t rows, int64_t cols, float eps, Stream stream) {
  if (cols <= kWarpMaxCols) {
    ForwardKernel<kVec, true><<<cuda::GridFor(rows, kWarpsPerBlock, 65535), kThreads, 0, cuda::StreamOf(stream)>>>(
        x, weight, bias, y, mean, rstd, rows, cols, eps);
  } else {
    ForwardKernel<kVec, false><<<cuda::GridFor(rows, 1, 65535), kThreads, 0, cuda::StreamOf(stream)>>>(
        x, weight, bias, y, mean, rstd, rows, cols, eps);
  }
  COL_CUDA_LAUNCHED();
}

void LayerNormForwardCuda(const float* x, const float* weight, const float* bias, float* y, float* mean,
                          float* rstd, int64_t rows, int64_t cols, float eps, Stream stream) {
  if (rows <= 0 || cols <= 0) return;
  // Every row starts 16-byte aligned when the bases are and cols % 4 == 0.
  if (cols % 4 == 0 && Aligned16(x) && Aligned16(y) && Aligned16(weight) && Aligned16(bias)) {
    LaunchForward<4>(x, weight, bias, y, mean, rstd, rows, cols, eps, stream);
  } else {
    LaunchForward<1>(x, weight, bias, y, mean, rstd, rows, cols, eps, stream);
  }
}

template <int kVec>
void LaunchBackward(const float* dy, const float* x, const float* weight, const float* mean, const float* rstd,
                    float* dx, float* partials, int64_t blocks, int64_t rows, int64_t cols,
                    Accumulate dx_accumulate, Stream stream) {
  // One thread per kVec columns up to kThreads, a multiple of 32.
  const int64_t lanes = (cols + kVec - 1) / kVec;
  const int threads = static_cast<int>(lanes >= kThreads ? kThreads : (lanes + 31) / 32 * 32);
  const int64_t partial_bytes = 2 * cols * static_cast<int64_t>(sizeof(float));
  const bool shared_partials = partial_bytes <= kMaxSharedPartials;
  const size_t shared_bytes = shared_partials ? static_cast<size_t>(partial_bytes) : 0;
  const unsigned grid = static_cast<unsigned>(blocks);
  if (dx_accumulate == Accumulate::kYes) {
    BackwardKernel<kVec, true><<<grid, threads, shared_bytes, cuda::StreamOf(stream)>>>(
        dy, x, weight, mean, rstd, dx, partials, rows, cols, shared_partials);
  } else {
    BackwardKernel<kVec, false><<<grid, threads, shared_bytes, cuda::StreamOf(stream)>>>(
        dy, x, weight, mean, rstd, dx, partials, rows, cols, shared_partials);
  }
  COL_CUDA_LAUNCHED();
}

void LayerNormBackwardCuda(const float* dy, const float* x, const float* weight, const float* mean,
                           const float* rstd, float* dx, float* dweight, float* dbias, int64_t rows, int64_t cols,
                           Accumulate dx_accumulate, Accumulate dparam_accumulate, Stream stream) {
  if (cols <= 0) return;
  const cudaStream_t s = cuda::StreamOf(stream);
  if (rows <= 0) {  // no rows: the parameter gradients are sums of nothing
    if (dparam_accumulate == Accumulate::kNo) {
      COL_CUDA_CHECK(cudaMemsetAsync(dweight, 0, static_cast<size_t>(cols) * sizeof(float), s));
      COL_CUDA_CHECK(cudaMemsetAsync(dbias, 0, static_cast<size_t>(cols) * sizeof(float), s));
    }
    return;
  }
  int64_t blocks = kScratchBudget / (2 * cols * static_cast<int64_t>(sizeof(float)));
  if (blocks > kMaxBackwardBlocks) blocks = kMaxBackwardBlocks;
  if (blocks > rows) blocks = rows;
  if (blocks < 1) blocks = 1;
  float* partials = nullptr;
  COL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partials),
                                 static_cast<size_t>(blocks * 2 * cols) * sizeof(float), s));
  // Every row (and every block's row of partials) starts 16-byte aligned when the bases
  // are and cols % 4 == 0; cudaMallocAsync's pointers are.
  if (cols % 4 == 0 && Aligned16(dy) && Aligned16(x) && Aligned16(weight) && Aligned16(dx)) {
    LaunchBackward<4>(dy, x, weight, mean, rstd, dx, partials, blocks, rows, cols, dx_accumulate, stream);
  } else {
    LaunchBackward<1>(dy, x, weight, mean, rstd, dx, partials, blocks, rows, cols, dx_accumulate, stream);
  }
  ColumnReduceKernel<<<cuda::GridFor(cols, kThreads), kThreads, 0, s>>>(
      partials, blocks, cols, dweight, dbias, dparam_accumulate == Accumulate::kYes);
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cudaFreeAsync(partials, s));
}

const Registrar<LayerNormForwardFn> kForward(LayerNormForwardTable(), Backend::kCuda, DType::kF32,
                                             &LayerNormForwardCuda);
const Registrar<LayerNormBackwardFn> kBackward(LayerNormBackwardTable(), Backend::kCuda, DType::kF32,
                                               &LayerNormBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
