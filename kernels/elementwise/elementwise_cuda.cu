// Elementwise CUDA twins: grid-stride loops, four floats per thread per step through
// float4 where every pointer is 16-byte aligned (cudaMalloc'd buffers and their
// 4-float offsets), a scalar loop otherwise. Add allows out == a or out == b: each
// element is read before it is written at the same index.
#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/elementwise/elementwise.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;

__host__ __device__ inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// out[i] = op(i) over [0, n), vectorised when `vec4` (all pointers aligned).
template <typename Op4, typename Op1>
__global__ void MapKernel(int64_t n, bool vec4, Op4 op4, Op1 op1) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) op4(i);
    tail = n4 * 4;
  }
  for (int64_t i = tail + start; i < n; i += stride) op1(i);
}

template <typename Op4, typename Op1>
void Launch(int64_t n, bool vec4, Stream stream, Op4 op4, Op1 op1) {
  if (n <= 0) return;
  const int64_t work = vec4 ? (n + 3) / 4 : n;
  MapKernel<<<cuda::GridFor(work, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(n, vec4, op4, op1);
  COL_CUDA_LAUNCHED();
}

void AddCuda(const float* a, const float* b, float* out, int64_t n, Stream stream) {
  Launch(
      n, Aligned16(a) && Aligned16(b) && Aligned16(out), stream,
      [=] __device__(int64_t i) {
        const float4 x = reinterpret_cast<const float4*>(a)[i], y = reinterpret_cast<const float4*>(b)[i];
        reinterpret_cast<float4*>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
      },
      [=] __device__(int64_t i) { out[i] = a[i] + b[i]; });
}

void AddIntoCuda(const float* src, float* dst, int64_t n, Accumulate accumulate, Stream stream) {
  if (accumulate == Accumulate::kNo) {
    if (n > 0 && src != dst) {
      COL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                     cuda::StreamOf(stream)));
    }
    return;
  }
  Launch(
      n, Aligned16(src) && Aligned16(dst), stream,
      [=] __device__(int64_t i) {
        const float4 x = reinterpret_cast<const float4*>(src)[i];
        float4 y = reinterpret_cast<float4*>(dst)[i];
        y.x += x.x, y.y += x.y, y.z += x.z, y.w += x.w;
        reinterpret_cast<float4*>(dst)[i] = y;
      },
      [=] __device__(int64_t i) { dst[i] += src[i]; });
}

void ScaleCuda(float* x, int64_t n, float alpha, Stream stream) {
  Launch(
      n, Aligned16(x), stream,
      [=] __device__(int64_t i) {
        float4 v = reinterpret_cast<float4*>(x)[i];
        v.x *= alpha, v.y *= alpha, v.z *= alpha, v.w *= alpha;
        reinterpret_cast<float4*>(x)[i] = v;
      },
      [=] __device__(int64_t i) { x[i] *= alpha; });
}

void FillCuda(float* x, int64_t n, float value, Stream stream) {
  Launch(
      n, Aligned16(x), stream,
      [=] __device__(int64_t i) { reinterpret_cast<float4*>(x)[i] = make_float4(value, value, value, value); },
      [=] __device__(int64_t i) { x[i] = value; });
}

const Registrar<AddFn> kAdd(AddTable(), Backend::kCuda, DType::kF32, &AddCuda);
const Registrar<AddIntoFn> kAddInto(AddIntoTable(), Backend::kCuda, DType::kF32, &AddIntoCuda);
const Registrar<ScaleFn> kScale(ScaleTable(), Backend::kCuda, DType::kF32, &ScaleCuda);
const Registrar<FillFn> kFill(FillTable(), Backend::kCuda, DType::kF32, &FillCuda);

}  // namespace
}  // namespace colossal::kernels
