// Layer normalisation over the last dimension (GPT-2: eps 1e-5, biased variance):
//   y = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps).
// Forward saves mean[rows] and rstd[rows] for the backward.
//
// Backward, with xhat = (x - mean) * rstd and g = dy * weight:
//   dx      (=|+=) rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))
//   dweight (=|+=) sum_rows dy * xhat
//   dbias   (=|+=) sum_rows dy
// `dx_accumulate` and `dparam_accumulate` pick `=` or `+=` for dx and for the two
// parameter gradients independently. dx must not alias dy or x.
//
// Tolerance against the reference: forward atol = rtol = 1e-5 (cols-long fp32 sums of
// O(1) terms, then one division); backward dx the same; dweight/dbias sum over rows, so
// rtol = atol = Fp32ReductionRtol(rows) * 4.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// y, mean, rstd and dx.
inline Tolerance LayerNormRowTolerance() { return {1e-5, 1e-5}; }
// dweight and dbias, sums over `rows`.
inline Tolerance LayerNormParamGradTolerance(int64_t rows) {
  return {Fp32ReductionRtol(rows) * 4, Fp32ReductionRtol(rows) * 4};
}

using LayerNormForwardFn = void(const float* x, const float* weight, const float* bias,
                                float* y, float* mean, float* rstd, int64_t rows,
                                int64_t cols, float eps, Stream stream);
Dispatch<LayerNormForwardFn>& LayerNormForwardTable();

using LayerNormBackwardFn = void(const float* dy, const float* x, const float* weight,
                                 const float* mean, const float* rstd, float* dx,
                                 float* dweight, float* dbias, int64_t rows, int64_t cols,
                                 Accumulate dx_accumulate, Accumulate dparam_accumulate,
                                 Stream stream);
Dispatch<LayerNormBackwardFn>& LayerNormBackwardTable();

template <typename T>
void LayerNormForwardRef(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                         int64_t rows, int64_t cols, float eps);
template <typename T>
void LayerNormBackwardRef(const T* dy, const T* x, const T* weight, const T* mean,
                          const T* rstd, T* dx, T* dweight, T* dbias, int64_t rows,
                          int64_t cols, Accumulate dx_accumulate, Accumulate dparam_accumulate);

inline void LayerNormForward(const float* x, const float* weight, const float* bias, float* y,
                             float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                             Stream stream = {}) {
  LayerNormForwardTable().Get(stream.backend, DType::kF32)(x, weight, bias, y, mean, rstd,
                                                           rows, cols, eps, stream);
}
inline void LayerNormBackward(const float* dy, const float* x, const float* weight,
                              const float* mean, const float* rstd, float* dx, float* dweight,
                              float* dbias, int64_t rows, int64_t cols,
                              Accumulate dx_accumulate, Accumulate dparam_accumulate,
                              Stream stream = {}) {
  LayerNormBackwardTable().Get(stream.backend, DType::kF32)(
      dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols, dx_accumulate,
      dparam_accumulate, stream);
}

}  // namespace colossal::kernels
