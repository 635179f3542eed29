// Elementwise kernels over n contiguous fp32 values.
//   Add:        out = a + b            (out may alias a or b; the residual stream)
//   AddInto:    dst (=|+=) src         (copy or accumulate; gradient fan-in)
//   Scale:      x *= alpha
//   Fill:       x = value
// Tolerance against the reference: exact for Fill and AddInto(kNo); one fp32 rounding
// (rtol = 1.2e-7) for the rest.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// Add, AddInto(kYes) and Scale: one fp32 rounding, relative to the result (2^-23 bound).
inline Tolerance ElementwiseRoundingTolerance() { return {0.0, 1.2e-7}; }
// Fill and AddInto(kNo): exact.
inline Tolerance ElementwiseExactTolerance() { return {0.0, 0.0}; }

using AddFn = void(const float* a, const float* b, float* out, int64_t n, Stream stream);
Dispatch<AddFn>& AddTable();

using AddIntoFn = void(const float* src, float* dst, int64_t n, Accumulate accumulate,
                       Stream stream);
Dispatch<AddIntoFn>& AddIntoTable();

using ScaleFn = void(float* x, int64_t n, float alpha, Stream stream);
Dispatch<ScaleFn>& ScaleTable();

using FillFn = void(float* x, int64_t n, float value, Stream stream);
Dispatch<FillFn>& FillTable();

template <typename T>
void AddRef(const T* a, const T* b, T* out, int64_t n);
template <typename T>
void AddIntoRef(const T* src, T* dst, int64_t n, Accumulate accumulate);
template <typename T>
void ScaleRef(T* x, int64_t n, float alpha);
template <typename T>
void FillRef(T* x, int64_t n, float value);

inline void Add(const float* a, const float* b, float* out, int64_t n, Stream stream = {}) {
  AddTable().Get(stream.backend, DType::kF32)(a, b, out, n, stream);
}
inline void AddInto(const float* src, float* dst, int64_t n, Accumulate accumulate,
                    Stream stream = {}) {
  AddIntoTable().Get(stream.backend, DType::kF32)(src, dst, n, accumulate, stream);
}
inline void Scale(float* x, int64_t n, float alpha, Stream stream = {}) {
  ScaleTable().Get(stream.backend, DType::kF32)(x, n, alpha, stream);
}
inline void Fill(float* x, int64_t n, float value, Stream stream = {}) {
  FillTable().Get(stream.backend, DType::kF32)(x, n, value, stream);
}

}  // namespace colossal::kernels
