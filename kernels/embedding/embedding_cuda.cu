// Embedding CUDA twins (embedding.h). Both kernels use 256-thread blocks shaped
// (tx, ty): ty row slots per block, tx threads striding over a row's columns (float4
// where c % 4 == 0 and the row buffers are 16-byte aligned), row slots grid-stride.
// Forward: slot i copies table[ids[i]] into out[i], or zeros it when the id is outside
// [0, rows) (another rank's block; a negative id, a caller bug the host cannot check
// without reading device memory, is treated the same rather than read out of bounds).
// Backward, deterministic and without atomics: (1) kNo zeroes dtable (cudaMemsetAsync);
// (2) a pass writes keys = id (out-of-range ids -> the sentinel `rows`) and values = i;
// (3) cub::DeviceRadixSort::SortPairs, stable, over only the bits `rows` needs, groups
// the positions by id with each group in increasing i; (4) the slot at each group's first
// sorted position owns that dtable row: every column is summed in fp32 from its current
// value through dout[i] in increasing i and stored once. That is the CPU twin's order, so
// the result is bit-identical to it and to itself run to run. Keys, values, their sorted
// copies and CUB's temporary storage share one stream-ordered scratch allocation
// (cudaMallocAsync / cudaFreeAsync). Requires n < 2^31 (positions are int32).
#include <cstdint>
#include <limits>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/common/cuda_backend.h"
#include "kernels/embedding/embedding.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The launch shape for rows of `lanes` vectors: tx threads per row, ty rows per block.
struct Shape {
  int tx, ty;
};
Shape ShapeFor(int64_t lanes) {
  int tx;
  if (lanes <= 32) {
    tx = 1;
    while (tx < lanes) tx *= 2;  // a power of two: tx·ty = 256
  } else {
    tx = lanes >= kThreads ? kThreads : static_cast<int>((lanes + 31) / 32 * 32);
  }
  return {tx, kThreads / tx};  // tx·ty is 256 or a multiple of 32
}

template <int kVec>
__device__ inline void CopyVec(const float* src, float* dst) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(src);
  } else {
    *dst = *src;
  }
}
template <int kVec>
__device__ inline void ZeroVec(float* dst) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(dst) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  } else {
    *dst = 0.0f;
  }
}

template <int kVec>
__global__ void ForwardKernel(const int32_t* ids, const float* table, float* out, int64_t n, int64_t rows,
                              int64_t c) {
  const int64_t col0 = static_cast<int64_t>(threadIdx.x) * kVec;
  const int64_t col_step = static_cast<int64_t>(blockDim.x) * kVec;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; i < n; i += row_step) {
    const int64_t id = ids[i];
    float* dst = out + i * c;
    if (id >= 0 && id < rows) {
      const float* src = table + id * c;
      for (int64_t j = col0; j < c; j += col_step) CopyVec<kVec>(src + j, dst + j);
    } else {
      for (int64_t j = col0; j < c; j += col_step) ZeroVec<kVec>(dst + j);
    }
  }
}

// keys[i] = ids[i] where it names a row of this block, else `sentinel` (= min(rows, 2^31));
// positions[i] = i.
__global__ void KeysKernel(const int32_t* ids, int64_t n, int64_t rows, uint32_t sentinel, uint32_t* keys,
                           int32_t* positions) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t id = ids[i];
    keys[i] = id >= 0 && id < rows ? static_cast<uint32_t>(id) : sentinel;
    positions[i] = static_cast<int32_t>(i);
  }
}

// The slot at sorted position p where a run of equal keys starts sums that run into its
// dtable row; every other slot does nothing.
template <int kVec>
__global__ void ScatterKernel(const uint32_t* keys, const int32_t* positions, const float* dout, float* dtable,
                              int64_t n, int64_t c, uint32_t sentinel) {
  const int64_t col0 = static_cast<int64_t>(threadIdx.x) * kVec;
  const int64_t col_step = static_cast<int64_t>(blockDim.x) * kVec;
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; p < n; p += row_step) {
    const uint32_t key = keys[p];
    if (key == sentinel || (p > 0 && keys[p - 1] == key)) continue;
    int64_t end = p + 1;
    while (end < n && keys[end] == key) ++end;
    float* dst = dtable + static_cast<int64_t>(key) * c;
    for (int64_t j = col0; j < c; j += col_step) {
      float acc[kVec];
      if constexpr (kVec == 4) {
        const float4 v = *reinterpret_cast<const float4*>(dst + j);
        acc[0] = v.x, acc[1] = v.y, acc[2] = v.z, acc[3] = v.w;
      } else {
        acc[0] = dst[j];
      }
      // Increasing i (the sort is stable). Unrolled so the loads of a long run (a
      // frequent id) are in flight together; the adds stay in order.
#pragma unroll 8
      for (int64_t q = p; q < end; ++q) {
        const float* src = dout + static_cast<int64_t>(positions[q]) * c + j;
        if constexpr (kVec == 4) {
          const float4 v = *reinterpret_cast<const float4*>(src);
          acc[0] += v.x, acc[1] += v.y, acc[2] += v.z, acc[3] += v.w;
        } else {
          acc[0] += *src;
        }
      }
      if constexpr (kVec == 4) {
        *reinterpret_cast<float4*>(dst + j) = make_float4(acc[0], acc[1], acc[2], acc[3]);
      } else {
        dst[j] = acc[0];
      }
    }
  }
}

void EmbeddingForwardCuda(const int32_t* ids, const float* table, float* out, int64_t n, int64_t rows, int64_t c,
                          Stream stream) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  if (n == 0 || c == 0) return;
  const bool vec4 = c % 4 == 0 && Aligned16(table) && Aligned16(out);
  const Shape shape = ShapeFor(vec4 ? c / 4 : c);
  const dim3 block(shape.tx, shape.ty);
  const unsigned grid = cuda::GridFor(n, shape.ty, 65535);
  if (vec4) {
    ForwardKernel<4><<<grid, block, 0, cuda::StreamOf(stream)>>>(ids, table, out, n, rows, c);
  } else {
    ForwardKernel<1><<<grid, block, 0, cuda::StreamOf(stream)>>>(ids, table, out, n, rows, c);
  }
  COL_CUDA_LAUNCHED();
}

size_t RoundUp256(size_t bytes) { return (bytes + 255) / 256 * 256; }

void EmbeddingBackwardCuda(const int32_t* ids, const float* dout, float* dtable, int64_t n, int64_t rows,
                           int64_t c, Accumulate accumulate, Stream stream) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  if (c == 0 || rows == 0) return;
  const cudaStream_t s = cuda::StreamOf(stream);
  if (accumulate == Accumulate::kNo) {
    COL_CUDA_CHECK(cudaMemsetAsync(dtable, 0, static_cast<size_t>(rows * c) * sizeof(float), s));
  }
  if (n == 0) return;
  COL_CHECK(n <= std::numeric_limits<int32_t>::max());
  const int items = static_cast<int>(n);
  // Valid keys are < rows <= sentinel <= 2^31; sort only the bits the sentinel needs.
  const int64_t limit = int64_t{1} << 31;
  const uint32_t sentinel = static_cast<uint32_t>(rows < limit ? rows : limit);
  int bits = 1;
  while (bits < 32 && (uint64_t{1} << bits) <= sentinel) ++bits;

  const size_t index_bytes = RoundUp256(static_cast<size_t>(n) * sizeof(uint32_t));
  size_t temp_bytes = 0;
  COL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr),
                                                 static_cast<uint32_t*>(nullptr),
                                                 static_cast<const int32_t*>(nullptr),
                                                 static_cast<int32_t*>(nullptr), items, 0, bits, s));
  char* scratch = nullptr;
  COL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), 4 * index_bytes + temp_bytes, s));
  auto* keys_in = reinterpret_cast<uint32_t*>(scratch);
  auto* positions_in = reinterpret_cast<int32_t*>(scratch + index_bytes);
  auto* keys = reinterpret_cast<uint32_t*>(scratch + 2 * index_bytes);
  auto* positions = reinterpret_cast<int32_t*>(scratch + 3 * index_bytes);
  void* temp = scratch + 4 * index_bytes;

  KeysKernel<<<cuda::GridFor(n, kThreads), kThreads, 0, s>>>(ids, n, rows, sentinel, keys_in, positions_in);
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, positions_in, positions, items, 0,
                                                 bits, s));
  const bool vec4 = c % 4 == 0 && Aligned16(dout) && Aligned16(dtable);
  const Shape shape = ShapeFor(vec4 ? c / 4 : c);
  const dim3 block(shape.tx, shape.ty);
  const unsigned grid = cuda::GridFor(n, shape.ty, 65535);
  if (vec4) {
    ScatterKernel<4><<<grid, block, 0, s>>>(keys, positions, dout, dtable, n, c, sentinel);
  } else {
    ScatterKernel<1><<<grid, block, 0, s>>>(keys, positions, dout, dtable, n, c, sentinel);
  }
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cudaFreeAsync(scratch, s));
}

const Registrar<EmbeddingForwardFn> kForward(EmbeddingForwardTable(), Backend::kCuda, DType::kF32,
                                             &EmbeddingForwardCuda);
const Registrar<EmbeddingBackwardFn> kBackward(EmbeddingBackwardTable(), Backend::kCuda, DType::kF32,
                                               &EmbeddingBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
