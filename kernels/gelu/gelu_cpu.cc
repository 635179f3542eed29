// GELU CPU twin: one OpenMP-parallel SIMD loop per direction, tanh via FastTanh.
#include "kernels/common/fast_math.h"
#include "kernels/gelu/gelu.h"

namespace colossal::kernels {
namespace {

constexpr float kS = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kC = 0.044715f;
// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

void GeluForwardCpu(const float* x, float* y, int64_t n, Stream) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + FastTanh(kS * (v + kC * v * v * v)));
  }
}

template <bool kAccumulate>
void GeluBackwardLoop(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = FastTanh(kS * (v + kC * v * v * v));
    const float du = kS * (1.0f + 3.0f * kC * v * v);
    const float grad = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
    const float out = dy[i] * grad;
    if constexpr (kAccumulate) {
      dx[i] += out;
    } else {
      dx[i] = out;
    }
  }
}

void GeluBackwardCpu(const float* x, const float* dy, float* dx, int64_t n,
                     Accumulate accumulate, Stream) {
  if (accumulate == Accumulate::kYes) {
    GeluBackwardLoop<true>(x, dy, dx, n);
  } else {
    GeluBackwardLoop<false>(x, dy, dx, n);
  }
}

const Registrar<GeluForwardFn> kForward(GeluForwardTable(), Backend::kCpu, DType::kF32,
                                        &GeluForwardCpu);
const Registrar<GeluBackwardFn> kBackward(GeluBackwardTable(), Backend::kCpu, DType::kF32,
                                          &GeluBackwardCpu);

}  // namespace
}  // namespace colossal::kernels
