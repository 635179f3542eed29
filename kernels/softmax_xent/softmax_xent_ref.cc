// Softmax cross-entropy specification: naive per-row loops with double accumulation;
// also defines the dispatch tables and registers the float reference as Backend::kRef.
// lse is computed for every row, ignored ones included (target < 0 only zeroes the loss
// and the gradient). Not for hot paths: single-threaded, libm exp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/softmax_xent/softmax_xent.h"

namespace colossal::kernels {

Dispatch<SoftmaxXentForwardFn>& SoftmaxXentForwardTable() {
  static Dispatch<SoftmaxXentForwardFn> table("softmax_xent_forward");
  return table;
}

Dispatch<SoftmaxXentBackwardFn>& SoftmaxXentBackwardTable() {
  static Dispatch<SoftmaxXentBackwardFn> table("softmax_xent_backward");
  return table;
}

template <typename T>
void SoftmaxXentForwardRef(const T* logits, int64_t ld, const int32_t* targets, T* loss, T* lse,
                           int64_t n, int64_t v) {
  COL_CHECK(n == 0 || (v >= 1 && ld >= v));
  for (int64_t i = 0; i < n; ++i) {
    const T* x = logits + i * ld;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, static_cast<double>(x[j]));
    double sum = 0;
    for (int64_t j = 0; j < v; ++j) sum += std::exp(static_cast<double>(x[j]) - mx);
    const double row_lse = mx + std::log(sum);
    lse[i] = static_cast<T>(row_lse);
    const int32_t t = targets[i];
    loss[i] = t < 0    ? T(0)
              : t >= v ? static_cast<T>(row_lse)
                       : static_cast<T>(row_lse - static_cast<double>(x[t]));
  }
}

template <typename T>
void SoftmaxXentBackwardRef(const T* logits, int64_t ld, const T* lse, const int32_t* targets,
                            const T* dloss, T* dlogits, int64_t n, int64_t v,
                            Accumulate accumulate) {
  COL_CHECK(n == 0 || (v >= 1 && ld >= v));
  for (int64_t i = 0; i < n; ++i) {
    const T* x = logits + i * ld;
    T* dx = dlogits + i * ld;
    const int32_t t = targets[i];
    const double d = t < 0 ? 0.0 : static_cast<double>(dloss[i]);
    const double row_lse = lse[i];
    for (int64_t j = 0; j < v; ++j) {
      // x[j] is read before dx[j] is written, so dlogits may alias logits.
      const double p = std::exp(static_cast<double>(x[j]) - row_lse);
      const double grad = t < 0 ? 0.0 : d * (p - (j == t ? 1.0 : 0.0));
      dx[j] = static_cast<T>(accumulate == Accumulate::kYes ? dx[j] + grad : grad);
    }
  }
}

template void SoftmaxXentForwardRef<float>(const float*, int64_t, const int32_t*, float*,
                                           float*, int64_t, int64_t);
template void SoftmaxXentForwardRef<double>(const double*, int64_t, const int32_t*, double*,
                                            double*, int64_t, int64_t);
template void SoftmaxXentBackwardRef<float>(const float*, int64_t, const float*,
                                            const int32_t*, const float*, float*, int64_t,
                                            int64_t, Accumulate);
template void SoftmaxXentBackwardRef<double>(const double*, int64_t, const double*,
                                             const int32_t*, const double*, double*, int64_t,
                                             int64_t, Accumulate);

namespace {
void ForwardRefTwin(const float* logits, int64_t ld, const int32_t* targets, float* loss,
                    float* lse, int64_t n, int64_t v, Stream) {
  SoftmaxXentForwardRef(logits, ld, targets, loss, lse, n, v);
}
void BackwardRefTwin(const float* logits, int64_t ld, const float* lse, const int32_t* targets,
                     const float* dloss, float* dlogits, int64_t n, int64_t v,
                     Accumulate accumulate, Stream) {
  SoftmaxXentBackwardRef(logits, ld, lse, targets, dloss, dlogits, n, v, accumulate);
}
const Registrar<SoftmaxXentForwardFn> kForward(SoftmaxXentForwardTable(), Backend::kRef,
                                               DType::kF32, &ForwardRefTwin);
const Registrar<SoftmaxXentBackwardFn> kBackward(SoftmaxXentBackwardTable(), Backend::kRef,
                                                 DType::kF32, &BackwardRefTwin);
}  // namespace

}  // namespace colossal::kernels
