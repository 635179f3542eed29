// SGD with momentum over one parameter segment (torch.optim.SGD semantics, dampening 0):
//   g' = grad_scale·g + wd·w            (coupled L2, as PyTorch's SGD)
//   buf ← μ·buf + g'                    (buf starts at 0, so step 1 gives buf = g')
//   w ← w − lr·(nesterov ? g' + μ·buf : buf)
// With μ = 0 this is plain SGD (buf still written, equal to g').
// Tolerance against the reference: atol = 1e-6·lr, rtol = 1e-6.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"

namespace colossal::kernels {

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
