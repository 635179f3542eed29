// AdamW over one parameter segment (PyTorch torch.optim.AdamW semantics):
//   g' = grad_scale · g
//   w ← w − lr·wd·w                               (decoupled decay, before the Adam step)
//   m ← β1 m + (1−β1) g';  v ← β2 v + (1−β2) g'²
//   w ← w − lr · m̂ / (√v̂ + eps),  m̂ = m / (1−β1^step), v̂ = v / (1−β2^step)
// `step` counts optimizer steps from 1. The segment may be a whole tensor or a shard of
// one (AdamW is elementwise, so shards need nothing more). g is read only.
// Tolerance against the reference after one step: atol = 1e-6·lr, rtol = 1e-6 on w;
// atol = rtol = 1e-6 on m and v (AdamWWeightTolerance, AdamWMomentTolerance).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// w after one step: a few fp32 roundings of w itself (rtol 1e-6), plus those of the
// update, which is at most ~lr per element (|m̂/(√v̂ + eps)| ≲ 1), hence atol 1e-6·lr.
inline Tolerance AdamWWeightTolerance(float lr) { return {1e-6 * static_cast<double>(lr), 1e-6}; }
// m and v after one step: two fp32 products and a sum each (a few ulps, rtol 1e-6); atol
// 1e-6 for elements where β·m and (1−β)·g' nearly cancel.
inline Tolerance AdamWMomentTolerance() { return {1e-6, 1e-6}; }

template <typename T>
struct AdamWArgsT {
  T* w = nullptr;
  const T* g = nullptr;
  T* m = nullptr;
  T* v = nullptr;
  int64_t n = 0;
  float lr = 0, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0;
  int64_t step = 1;
  float grad_scale = 1.0f;
};
using AdamWArgs = AdamWArgsT<float>;

using AdamWStepFn = void(const AdamWArgs& args, Stream stream);
Dispatch<AdamWStepFn>& AdamWStepTable();

template <typename T>
void AdamWStepRef(const AdamWArgsT<T>& args);

inline void AdamWStep(const AdamWArgs& args, Stream stream = {}) {
  AdamWStepTable().Get(stream.backend, DType::kF32)(args, stream);
}

}  // namespace colossal::kernels
