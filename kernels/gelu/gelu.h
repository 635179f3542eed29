// GELU, tanh form (GPT-2's "gelu_new", PyTorch approximate="tanh"):
//   y = 0.5 x (1 + tanh(s (x + 0.044715 x^3))),  s = sqrt(2/pi)
//   dx (=|+=) dy * dy/dx
// Elementwise over n values. y may alias x; dx may alias dy (not x).
// Tolerance against the reference: atol = rtol = 2e-6 (a few ulps of fp32 tanh/exp), for
// y and dx alike.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

inline Tolerance GeluTolerance() { return {2e-6, 2e-6}; }

using GeluForwardFn = void(const float* x, float* y, int64_t n, Stream stream);
Dispatch<GeluForwardFn>& GeluForwardTable();

using GeluBackwardFn = void(const float* x, const float* dy, float* dx, int64_t n,
                            Accumulate accumulate, Stream stream);
Dispatch<GeluBackwardFn>& GeluBackwardTable();

template <typename T>
void GeluForwardRef(const T* x, T* y, int64_t n);
template <typename T>
void GeluBackwardRef(const T* x, const T* dy, T* dx, int64_t n, Accumulate accumulate);

inline void GeluForward(const float* x, float* y, int64_t n, Stream stream = {}) {
  GeluForwardTable().Get(stream.backend, DType::kF32)(x, y, n, stream);
}
inline void GeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                         Accumulate accumulate, Stream stream = {}) {
  GeluBackwardTable().Get(stream.backend, DType::kF32)(x, dy, dx, n, accumulate, stream);
}

}  // namespace colossal::kernels
