// Cast CUDA twins: grid-stride loops over the hardware conversions of cuda_bf16.h and
// cuda_fp16.h (__float2bfloat16_rn, __float2half_rn: round to nearest even, as the
// contract says).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/convert/convert.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;

template <DType D>
__global__ void To16Kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (D == DType::kBF16) {
      y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
    } else {
      y[i] = __half_as_ushort(__float2half_rn(x[i]));
    }
  }
}

template <DType D>
__global__ void From16Kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (D == DType::kBF16) {
      y[i] = __bfloat162float(__ushort_as_bfloat16(x[i]));
    } else {
      y[i] = __half2float(__ushort_as_half(x[i]));
    }
  }
}

template <DType D>
void To16Cuda(const float* x, uint16_t* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  To16Kernel<D><<<cuda::GridFor(n, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(x, y, n);
  COL_CUDA_LAUNCHED();
}

template <DType D>
void From16Cuda(const uint16_t* x, float* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  From16Kernel<D><<<cuda::GridFor(n, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(x, y, n);
  COL_CUDA_LAUNCHED();
}

const Registrar<CastTo16Fn> kToBf16(CastTo16Table(), Backend::kCuda, DType::kBF16, &To16Cuda<DType::kBF16>);
const Registrar<CastTo16Fn> kToF16(CastTo16Table(), Backend::kCuda, DType::kF16, &To16Cuda<DType::kF16>);
const Registrar<Cast16ToF32Fn> kFromBf16(Cast16ToF32Table(), Backend::kCuda, DType::kBF16, &From16Cuda<DType::kBF16>);
const Registrar<Cast16ToF32Fn> kFromF16(Cast16ToF32Table(), Backend::kCuda, DType::kF16, &From16Cuda<DType::kF16>);

}  // namespace
}  // namespace colossal::kernels
