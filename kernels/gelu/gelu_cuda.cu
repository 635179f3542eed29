// GELU CUDA twins (tanh form, gelu.h): elementwise grid-stride loops, four floats per
// thread per step through float4 where every pointer is 16-byte aligned, a scalar loop
// otherwise (and for the n % 4 tail). Each element is read and written by one thread, in
// that order, so y == x and dx == dy are safe.
// tanh(u) is taken from e = exp(-2|u|): 1 ± tanh(u) = 2/(1 + e) or 2e/(1 + e) and
// 1 − tanh² = 4e/(1 + e)², each relative-accurate (no 1 − t cancellation as x → −∞ or
// in the derivative's tail), so y and dx stay within a few ulps of the double reference.
#include <cstdint>

#include "kernels/common/cuda_backend.h"
#include "kernels/gelu/gelu.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;
constexpr float kS = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kC = 0.044715f;

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// half_onep = (1 + tanh(u)) / 2 and sech2 = 1 − tanh(u)² for u = s (v + c v³).
struct TanhParts {
  float half_onep;
  float sech2;
};
__device__ inline TanhParts Parts(float v) {
  const float u = kS * (v + kC * v * v * v);
  const float e = expf(-2.0f * fabsf(u));  // in [0, 1]; 0 once |u| > ~44
  const float r = 1.0f / (1.0f + e);
  // sign(u) = sign(v): 1 + c v² > 0.
  return {u >= 0.0f ? r : e * r, 4.0f * e * r * r};
}

__device__ inline float GeluValue(float v) { return v * Parts(v).half_onep; }

__device__ inline float GeluGrad(float v) {
  const TanhParts p = Parts(v);
  const float du = kS * (1.0f + 3.0f * kC * v * v);
  return p.half_onep + 0.5f * v * p.sech2 * du;
}

__global__ void GeluForwardKernel(const float* x, float* y, int64_t n, bool vec4) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      reinterpret_cast<float4*>(y)[i] = make_float4(GeluValue(v.x), GeluValue(v.y), GeluValue(v.z), GeluValue(v.w));
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + start; i < n; i += stride) y[i] = GeluValue(x[i]);
}

template <bool kAccumulate>
__global__ void GeluBackwardKernel(const float* x, const float* dy, float* dx, int64_t n, bool vec4) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      const float4 g = reinterpret_cast<const float4*>(dy)[i];
      float4 out = make_float4(g.x * GeluGrad(v.x), g.y * GeluGrad(v.y), g.z * GeluGrad(v.z), g.w * GeluGrad(v.w));
      if constexpr (kAccumulate) {
        const float4 old = reinterpret_cast<const float4*>(dx)[i];
        out.x += old.x, out.y += old.y, out.z += old.z, out.w += old.w;
      }
      reinterpret_cast<float4*>(dx)[i] = out;
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + start; i < n; i += stride) {
    const float out = dy[i] * GeluGrad(x[i]);
    if constexpr (kAccumulate) {
      dx[i] += out;
    } else {
      dx[i] = out;
    }
  }
}

void GeluForwardCuda(const float* x, float* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  const bool vec4 = Aligned16(x) && Aligned16(y);
  const int64_t work = vec4 ? (n + 3) / 4 : n;
  GeluForwardKernel<<<cuda::GridFor(work, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(x, y, n, vec4);
  COL_CUDA_LAUNCHED();
}

void GeluBackwardCuda(const float* x, const float* dy, float* dx, int64_t n, Accumulate accumulate,
                      Stream stream) {
  if (n <= 0) return;
  const bool vec4 = Aligned16(x) && Aligned16(dy) && Aligned16(dx);
  const int64_t work = vec4 ? (n + 3) / 4 : n;
  const unsigned blocks = cuda::GridFor(work, kThreads);
  if (accumulate == Accumulate::kYes) {
    GeluBackwardKernel<true><<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(x, dy, dx, n, vec4);
  } else {
    GeluBackwardKernel<false><<<blocks, kThreads, 0, cuda::StreamOf(stream)>>>(x, dy, dx, n, vec4);
  }
  COL_CUDA_LAUNCHED();
}

const Registrar<GeluForwardFn> kForward(GeluForwardTable(), Backend::kCuda, DType::kF32, &GeluForwardCuda);
const Registrar<GeluBackwardFn> kBackward(GeluBackwardTable(), Backend::kCuda, DType::kF32, &GeluBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
