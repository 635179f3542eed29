// AdamW CPU twin: one fused fp32 pass per element (read w, g, m, v; write w, m, v: 28
// bytes), OpenMP-parallel and SIMD, with every per-step scalar (decay factor, bias
// corrections folded into a step size and a 1/√bc2 factor) computed once in double.
#include <cmath>

#include "kernels/optim/adamw.h"

namespace colossal::kernels {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = int64_t{1} << 15;

void AdamWStepCpu(const AdamWArgs& a, Stream) {
  COL_CHECK(a.step >= 1);
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
  // m̂/(√v̂ + eps) = (m/bc1) / (√v·(1/√bc2) + eps).
  const float step_size = static_cast<float>(static_cast<double>(a.lr) / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float decay =
      static_cast<float>(1.0 - static_cast<double>(a.lr) * static_cast<double>(a.weight_decay));
  const float beta1 = a.beta1, one_minus_beta1 = static_cast<float>(1.0 - a.beta1);
  const float beta2 = a.beta2, one_minus_beta2 = static_cast<float>(1.0 - a.beta2);
  const float eps = a.eps, scale = a.grad_scale;
  float* w = a.w;
  const float* g = a.g;
  float* m = a.m;
  float* v = a.v;
  const int64_t n = a.n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = scale * g[i];
    const float mi = beta1 * m[i] + one_minus_beta1 * gi;
    const float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    w[i] = w[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    m[i] = mi;
    v[i] = vi;
  }
}

const Registrar<AdamWStepFn> kAdamW(AdamWStepTable(), Backend::kCpu, DType::kF32,
                                    &AdamWStepCpu);

}  // namespace
}  // namespace colossal::kernels
