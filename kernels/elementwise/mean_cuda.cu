// Mean CUDA twins. Mean: one block of kThreads threads; thread t sums x[t], x[t + kThreads],
// ... in double, then a shared-memory tree halves the partial sums in a fixed pairing, so
// the result is the same on every run (no atomics, no dependence on scheduling). One
// block reads the loss (one value per token, at most a few million) at a single SM's
// bandwidth, well under a step's other kernels. MeanBackward: a grid-stride broadcast of
// dy[0] / (float)n, read on the device, with the CPU twin's fp32 arithmetic (IEEE
// division: no fast-math flags), so its results equal the CPU twin's bit for bit.
#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/elementwise/mean.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads) MeanKernel(const float* x, float* out, int64_t n) {
  __shared__ double partial[kThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += static_cast<double>(x[i]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(partial[0] / static_cast<double>(n));
}

__global__ void MeanBackwardKernel(const float* dy, float* dx, int64_t n, bool accumulate) {
  const float g = dy[0] / static_cast<float>(n);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

void MeanCuda(const float* x, float* out, int64_t n, Stream stream) {
  COL_CHECK(n >= 1);
  MeanKernel<<<1, kThreads, 0, cuda::StreamOf(stream)>>>(x, out, n);
  COL_CUDA_LAUNCHED();
}

void MeanBackwardCuda(const float* dy, float* dx, int64_t n, Accumulate accumulate, Stream stream) {
  if (n <= 0) return;
  constexpr int kBroadcastThreads = 256;
  MeanBackwardKernel<<<cuda::GridFor(n, kBroadcastThreads), kBroadcastThreads, 0, cuda::StreamOf(stream)>>>(
      dy, dx, n, accumulate == Accumulate::kYes);
  COL_CUDA_LAUNCHED();
}

const Registrar<MeanFn> kMean(MeanTable(), Backend::kCuda, DType::kF32, &MeanCuda);
const Registrar<MeanBackwardFn> kMeanBackward(MeanBackwardTable(), Backend::kCuda, DType::kF32, &MeanBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
