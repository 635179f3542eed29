// SGD with momentum over one parameter segment (torch.optim.SGD semantics, dampening 0):
//   g' = grad_scale·g + wd·w            (coupled L2, as PyTorch's SGD)
//   buf ← μ·buf + g'                    (buf starts at 0, so step 1 gives buf = g')
//   w ← w − lr·(nesterov ? g' + μ·buf : buf)
// With μ = 0 this is plain SGD (buf still written, equal to g').
// Tolerance against the reference after one step: atol = 1e-6·lr, rtol = 1e-6 on w;
// atol = rtol = 1e-6 on buf (SgdWeightTolerance, SgdBufferTolerance).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// w: a few fp32 roundings of w (rtol 1e-6) plus those of the step lr·(buf or g' + μ·buf),
// which scales with lr, hence atol 1e-6·lr.
inline Tolerance SgdWeightTolerance(float lr) { return {1e-6 * static_cast<double>(lr), 1e-6}; }
// buf = μ·buf + g': not multiplied by lr, so the same relative bound with an absolute
// 1e-6 for elements where μ·buf and g' nearly cancel (buf is O(grad) in size).
inline Tolerance SgdBufferTolerance() { return {1e-6, 1e-6}; }

enum class Nesterov : uint8_t { kNo, kYes };

template <typename T>
struct SgdArgsT {
  T* w = nullptr;
  const T* g = nullptr;
  T* buf = nullptr;
  int64_t n = 0;
  float lr = 0, momentum = 0.9f, weight_decay = 0;
  Nesterov nesterov = Nesterov::kNo;
  float grad_scale = 1.0f;
};
using SgdArgs = SgdArgsT<float>;

using SgdStepFn = void(const SgdArgs& args, Stream stream);
Dispatch<SgdStepFn>& SgdStepTable();

template <typename T>
void SgdStepRef(const SgdArgsT<T>& args);

inline void SgdStep(const SgdArgs& args, Stream stream = {}) {
  SgdStepTable().Get(stream.backend, DType::kF32)(args, stream);
}

}  // namespace colossal::kernels
