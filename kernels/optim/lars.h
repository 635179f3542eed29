// LARS (You et al. 2017, "Large Batch Training of Convolutional Networks") over one
// parameter segment, in two phases like LAMB (norms reduced across shards between):
//   phase 1, LarsNorms: g' = grad_scale·g; sums[0] = Σ w², sums[1] = Σ g'²  (double)
//   caller:  trust = η‖w‖ / (‖g'‖ + wd‖w‖), 1 when ‖w‖ or ‖g'‖ is 0, and 1 for
//            no-decay tensors (wd 0 there too); local_lr = lr · trust
//   phase 2, LarsApply: buf ← μ·buf + local_lr·(g' + wd·w);  w ← w − buf
// η is `trust_coef` (default 0.001), μ is `momentum` (default 0.9).
// Tolerance against the reference: sums rtol = Fp32ReductionRtol(n)·4; w and buf after
// apply atol = 1e-6·local_lr, rtol = 1e-6 (LarsSumsTolerance, LarsApplyTolerance).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// sums: Σw² and Σg'² over n elements, blocked double sums of fp32 inputs (and one
// grad_scale² scaling): 4·Fp32ReductionRtol(n), relative (sums ≥ 0).
inline Tolerance LarsSumsTolerance(int64_t n) { return {0.0, 4.0 * Fp32ReductionRtol(n)}; }
// w and buf after apply: a few fp32 roundings (rtol 1e-6) plus those of the step
// local_lr·(g' + wd·w), hence atol 1e-6·local_lr. This assumes buf at the scale LARS
// keeps it (a few local_lr): w − buf then loses at most ~1e-7·|buf| to cancellation.
inline Tolerance LarsApplyTolerance(float local_lr) {
  return {1e-6 * static_cast<double>(local_lr), 1e-6};
}

template <typename T>
struct LarsArgsT {
  T* w = nullptr;
  const T* g = nullptr;
  T* buf = nullptr;  // momentum buffer
  int64_t n = 0;
  float momentum = 0.9f, weight_decay = 0;
  float grad_scale = 1.0f;
};
using LarsArgs = LarsArgsT<float>;

using LarsNormsFn = void(const LarsArgs& args, double* sums, Stream stream);
Dispatch<LarsNormsFn>& LarsNormsTable();

using LarsApplyFn = void(const LarsArgs& args, float local_lr, Stream stream);
Dispatch<LarsApplyFn>& LarsApplyTable();

// local_lr = lr · trust from the whole-tensor sums, as specified above.
float LarsLocalLr(double sum_w2, double sum_g2, float lr, float trust_coef, float weight_decay);

template <typename T>
void LarsNormsRef(const LarsArgsT<T>& args, double* sums);
template <typename T>
void LarsApplyRef(const LarsArgsT<T>& args, float local_lr);

inline void LarsNorms(const LarsArgs& args, double* sums, Stream stream = {}) {
  LarsNormsTable().Get(stream.backend, DType::kF32)(args, sums, stream);
}
inline void LarsApply(const LarsArgs& args, float local_lr, Stream stream = {}) {
  LarsApplyTable().Get(stream.backend, DType::kF32)(args, local_lr, stream);
}

}  // namespace colossal::kernels
