// LAMB over one parameter segment, in two phases so that sharded optimizers (ZeRO) can
// reduce the two norms across the shards of a tensor between them:
//   phase 1, LambMoments: g' = grad_scale·g; m ← β1 m + (1−β1) g'; v ← β2 v + (1−β2) g'²;
//            u = m̂/(√v̂ + eps) + wd·w (m̂, v̂ bias-corrected with `step`, from 1);
//            sums[0] = Σ w², sums[1] = Σ u²  (double, overwritten)
//   caller:  r = ‖w‖/‖u‖ over the whole tensor (1 when either is 0), clamped to
//            [0, trust_clip]; r = 1 for no-decay tensors (wd 0 there too)
//   phase 2, LambApply: w ← w − lr · r · u   (u recomputed from m, v and the same w)
// `sums` is host memory for the CPU twins and device memory for CUDA twins.
// Tolerance against the reference: sums rtol = Fp32ReductionRtol(n)·4; m and v after
// moments atol = rtol = 1e-6 (AdamW's); w after apply atol = 1e-6·lr·r, rtol = 1e-6
// (LambSumsTolerance, LambMomentTolerance, LambWeightTolerance).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

// sums: Σw² and Σu² over n elements; u is formed in fp32 (a few ulps per term) and the
// blocked double sum adds order effects: 4·Fp32ReductionRtol(n), relative (sums ≥ 0).
inline Tolerance LambSumsTolerance(int64_t n) { return {0.0, 4.0 * Fp32ReductionRtol(n)}; }
// m and v: the moment updates are AdamW's (adamw.h), with its atol = rtol = 1e-6.
inline Tolerance LambMomentTolerance() { return {1e-6, 1e-6}; }
// w after apply: a few fp32 roundings of w (rtol 1e-6) plus those of the step lr·r·u,
// |u| ≲ 1, hence atol 1e-6·lr·r.
inline Tolerance LambWeightTolerance(float lr, float trust_ratio) {
  return {1e-6 * static_cast<double>(lr) * static_cast<double>(trust_ratio), 1e-6};
}

template <typename T>
struct LambArgsT {
  T* w = nullptr;
  const T* g = nullptr;
  T* m = nullptr;
  T* v = nullptr;
  int64_t n = 0;
  float lr = 0, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-6f, weight_decay = 0;
  int64_t step = 1;
  float grad_scale = 1.0f;
};
using LambArgs = LambArgsT<float>;

// The per-step scalars of every LAMB twin but the reference, computed once in double and
// rounded to fp32 here, so the CPU and CUDA twins use the very same values.
struct LambConsts {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float inv_bc1, inv_sqrt_bc2, eps, wd, scale;
};
inline LambConsts LambConstsOf(const LambArgs& a) {
  COL_CHECK(a.step >= 1);
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
  return {a.beta1,
          static_cast<float>(1.0 - a.beta1),
          a.beta2,
          static_cast<float>(1.0 - a.beta2),
          static_cast<float>(1.0 / bc1),
          static_cast<float>(1.0 / std::sqrt(bc2)),
          a.eps,
          a.weight_decay,
          a.grad_scale};
}

using LambMomentsFn = void(const LambArgs& args, double* sums, Stream stream);
Dispatch<LambMomentsFn>& LambMomentsTable();

using LambApplyFn = void(const LambArgs& args, float trust_ratio, Stream stream);
Dispatch<LambApplyFn>& LambApplyTable();

// r from the two sums (whole-tensor Σw², Σu²) as specified above.
float LambTrustRatio(double sum_w2, double sum_u2, float trust_clip);

template <typename T>
void LambMomentsRef(const LambArgsT<T>& args, double* sums);
template <typename T>
void LambApplyRef(const LambArgsT<T>& args, float trust_ratio);

inline void LambMoments(const LambArgs& args, double* sums, Stream stream = {}) {
  LambMomentsTable().Get(stream.backend, DType::kF32)(args, sums, stream);
}
inline void LambApply(const LambArgs& args, float trust_ratio, Stream stream = {}) {
  LambApplyTable().Get(stream.backend, DType::kF32)(args, trust_ratio, stream);
}

}  // namespace colossal::kernels
