// Softmax cross-entropy fused with the logits: no probability tensor is materialised.
// Forward, per row i of logits [n, v] (row stride ld >= v) with target t_i:
//   lse_i = log sum_j exp(logits[i, j]),   loss_i = lse_i − logits[i, t_i]
// Backward, given dloss [n] (the upstream gradient of each row's loss):
//   dlogits[i, j] (=|+=) dloss_i · (exp(logits[i, j] − lse_i) − [j == t_i])
// dlogits may alias logits (exactly: same pointer and ld), which is how the training
// graph turns the logits buffer into its gradient in place.
// A target < 0 marks a row to ignore: loss 0, gradient 0. A target >= v names a class
// outside this block of a vocabulary split over ranks (vocab-parallel cross-entropy):
// loss_i = lse_i and the gradient has no one-hot term.
//
// Tolerance against the reference: loss and lse atol = rtol = Fp32ReductionRtol(v) · 4
// (a v-long fp32 sum of exponentials); dlogits atol = 1e-6 · max|dloss|, rtol = 1e-5.
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// loss and lse: the error of a v-long fp32 sum of exponentials.
inline Tolerance SoftmaxXentLossTolerance(int64_t v) {
  const double t = 4.0 * Fp32ReductionRtol(v);
  return {t, t};
}
// dlogits: one fast exp (2 ulp) times dloss, plus the fp32 rounding of x − lse
// (|x − lse| <= ~200: <= 1e-5 relative to p where p matters).
inline Tolerance SoftmaxXentGradTolerance(double max_abs_dloss) { return {1e-6 * max_abs_dloss, 1e-5}; }

using SoftmaxXentForwardFn = void(const float* logits, int64_t ld, const int32_t* targets,
                                  float* loss, float* lse, int64_t n, int64_t v,
                                  Stream stream);
Dispatch<SoftmaxXentForwardFn>& SoftmaxXentForwardTable();

using SoftmaxXentBackwardFn = void(const float* logits, int64_t ld, const float* lse,
                                   const int32_t* targets, const float* dloss, float* dlogits,
                                   int64_t n, int64_t v, Accumulate accumulate, Stream stream);
Dispatch<SoftmaxXentBackwardFn>& SoftmaxXentBackwardTable();

template <typename T>
void SoftmaxXentForwardRef(const T* logits, int64_t ld, const int32_t* targets, T* loss, T* lse,
                           int64_t n, int64_t v);
template <typename T>
void SoftmaxXentBackwardRef(const T* logits, int64_t ld, const T* lse, const int32_t* targets,
                            const T* dloss, T* dlogits, int64_t n, int64_t v,
                            Accumulate accumulate);

inline void SoftmaxXentForward(const float* logits, int64_t ld, const int32_t* targets,
                               float* loss, float* lse, int64_t n, int64_t v,
                               Stream stream = {}) {
  SoftmaxXentForwardTable().Get(stream.backend, DType::kF32)(logits, ld, targets, loss, lse, n,
                                                             v, stream);
}
inline void SoftmaxXentBackward(const float* logits, int64_t ld, const float* lse,
                                const int32_t* targets, const float* dloss, float* dlogits,
                                int64_t n, int64_t v, Accumulate accumulate,
                                Stream stream = {}) {
  SoftmaxXentBackwardTable().Get(stream.backend, DType::kF32)(logits, ld, lse, targets, dloss,
                                                              dlogits, n, v, accumulate, stream);
}

}  // namespace colossal::kernels
