// LAMB CPU twins. Moments: one fused pass per fixed block (read w, g, m, v; write m, v:
// 24 bytes per element) that also sums w² and u² in double; blocks are added in order
// (block_reduce.h), so the sums do not depend on the thread count. Apply: one fused
// pass (read w, m, v; write w: 16 bytes) recomputing u with the same fp32 expression.
#include <cmath>

#include "kernels/optim/block_reduce.h"
#include "kernels/optim/lamb.h"

namespace colossal::kernels {
namespace {

// u = m̂/(√v̂ + eps) + wd·w, the one fp32 expression both phases use.
inline float Update(const LambConsts& c, float m, float v, float w) {
  return m * c.inv_bc1 / (std::sqrt(v) * c.inv_sqrt_bc2 + c.eps) + c.wd * w;
}

void LambMomentsCpu(const LambArgs& a, double* sums, Stream) {
  const LambConsts c = LambConstsOf(a);
  float* w = a.w;
  const float* g = a.g;
  float* m = a.m;
  float* v = a.v;
  optim_internal::BlockedSums<2>(a.n, sums, [=](int64_t begin, int64_t end, double* out) {
    // Locals, not captures: GCC does not vectorise a loop that loads through the closure.
    const LambConsts k = c;
    float* wb = w + begin;
    const float* gb = g + begin;
    float* mb = m + begin;
    float* vb = v + begin;
    const int64_t len = end - begin;
    double sum_w2 = 0.0, sum_u2 = 0.0;
#pragma omp simd reduction(+ : sum_w2, sum_u2)
    for (int64_t i = 0; i < len; ++i) {
      const float gi = k.scale * gb[i];
      const float mi = k.beta1 * mb[i] + k.one_minus_beta1 * gi;
      const float vi = k.beta2 * vb[i] + k.one_minus_beta2 * gi * gi;
      mb[i] = mi;
      vb[i] = vi;
      const float wi = wb[i];
      const double ui = Update(k, mi, vi, wi);
      sum_w2 += static_cast<double>(wi) * static_cast<double>(wi);
      sum_u2 += ui * ui;
    }
    out[0] = sum_w2;
    out[1] = sum_u2;
  });
}

void LambApplyCpu(const LambArgs& a, float trust_ratio, Stream) {
  const LambConsts c = LambConstsOf(a);
  const float step = static_cast<float>(static_cast<double>(a.lr) * trust_ratio);
  float* w = a.w;
  const float* m = a.m;
  const float* v = a.v;
  const int64_t n = a.n;
#pragma omp parallel for simd schedule(static) if (n >= optim_internal::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i];
    w[i] = wi - step * Update(c, m[i], v[i], wi);
  }
}

const Registrar<LambMomentsFn> kMoments(LambMomentsTable(), Backend::kCpu, DType::kF32,
                                        &LambMomentsCpu);
const Registrar<LambApplyFn> kApply(LambApplyTable(), Backend::kCpu, DType::kF32,
                                    &LambApplyCpu);

}  // namespace
}  // namespace colossal::kernels
