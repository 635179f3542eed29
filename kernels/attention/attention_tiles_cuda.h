// The tile geometry and warp helpers both attention CUDA files build on (included by
// attention_cuda.cu and block_attention_cuda.cu only; CUDA device code).
//
// One block of 256 threads (8 warps) owns a 32-row tile of one (batch, head); warp w owns
// tile rows w, w+8, w+16, w+24; in a 32×32 score tile lane l owns column l, so a row
// statistic is a full-warp butterfly, identical in every lane. A row × D accumulator
// lives in registers, lane l holding dims l, l+32, l+64, l+96 (D <= kMaxD). Tiles of
// Q/K/V/dO sit in shared memory with an odd row stride RowLd(D) = D | 1, so 32 lanes
// reading 32 rows hit 32 banks.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/common/cuda_backend.h"

namespace colossal::kernels::attention_tiles {

constexpr int kTile = 32;                     // rows and columns of a score tile
constexpr int kThreads = 256;                 // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kTile / kWarps;  // 4
constexpr int kMaxD = 128;
constexpr int kDimsPerLane = kMaxD / 32;      // 4
constexpr int kSLd = kTile + 1;               // row stride of 32×32 tiles in shared memory
constexpr float kNegInf = -INFINITY;

__device__ inline float WarpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ inline float WarpMax(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// dst[r·ld + d] = src[r·stride + d] for r < rows, 0 for rows <= r < kTile; d < D. Only
// rows below `rows` are dereferenced. Consecutive threads take consecutive d.
__device__ inline void LoadRows(float* dst, int ld, const float* src, int64_t stride, int64_t rows, int D) {
  for (int e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int r = e / D, d = e - r * D;
    dst[r * ld + d] = r < rows ? src[r * stride + d] : 0.0f;
  }
}

__host__ __device__ inline int RowLd(int D) { return D | 1; }
// Dynamic shared memory of the forward and dQ kernels, for head dim D.
inline size_t ForwardSmem(int D) { return sizeof(float) * (2 * kTile * RowLd(D) + kTile * kSLd); }
inline size_t DqSmem(int D) { return sizeof(float) * (4 * kTile * RowLd(D) + kTile * kSLd); }

// Past the 48 KiB default a kernel must opt in; always to the kMaxD figure, so concurrent
// callers set the same value.
template <typename Kernel>
void AllowSmem(Kernel* kernel, size_t bytes, size_t max_bytes) {
  if (bytes > 48 * 1024) {
    COL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(max_bytes)));
  }
}

// A grid dimension; `what` names the kernel family in the error.
inline unsigned BlocksFor(int64_t n, const char* what) {
  COL_CHECK_MSG(n <= 0x7fffffff, what);
  return static_cast<unsigned>(n);
}

}  // namespace colossal::kernels::attention_tiles
