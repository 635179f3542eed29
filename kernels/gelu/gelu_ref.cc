// GELU specification: the tanh form evaluated in double; also defines the tables.
#include <cmath>

#include "kernels/gelu/gelu.h"

namespace colossal::kernels {

Dispatch<GeluForwardFn>& GeluForwardTable() {
  static Dispatch<GeluForwardFn> table("gelu_forward");
  return table;
}

Dispatch<GeluBackwardFn>& GeluBackwardTable() {
  static Dispatch<GeluBackwardFn> table("gelu_backward");
  return table;
}

namespace {
constexpr double kS = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kC = 0.044715;
}  // namespace

template <typename T>
void GeluForwardRef(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<T>(0.5 * v * (1.0 + std::tanh(kS * (v + kC * v * v * v))));
  }
}

template <typename T>
void GeluBackwardRef(const T* x, const T* dy, T* dx, int64_t n, Accumulate accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double u = kS * (v + kC * v * v * v);
    const double t = std::tanh(u);
    const double du = kS * (1.0 + 3.0 * kC * v * v);
    const double grad = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du;
    const double out = static_cast<double>(dy[i]) * grad;
    dx[i] = static_cast<T>(accumulate == Accumulate::kYes ? dx[i] + out : out);
  }
}

template void GeluForwardRef<float>(const float*, float*, int64_t);
template void GeluForwardRef<double>(const double*, double*, int64_t);
template void GeluBackwardRef<float>(const float*, const float*, float*, int64_t, Accumulate);
template void GeluBackwardRef<double>(const double*, const double*, double*, int64_t,
                                      Accumulate);

namespace {
void ForwardRefTwin(const float* x, float* y, int64_t n, Stream) { GeluForwardRef(x, y, n); }
void BackwardRefTwin(const float* x, const float* dy, float* dx, int64_t n, Accumulate acc,
                     Stream) {
  GeluBackwardRef(x, dy, dx, n, acc);
}
const Registrar<GeluForwardFn> kForward(GeluForwardTable(), Backend::kRef, DType::kF32,
                                        &ForwardRefTwin);
const Registrar<GeluBackwardFn> kBackward(GeluBackwardTable(), Backend::kRef, DType::kF32,
                                          &BackwardRefTwin);
}  // namespace

}  // namespace colossal::kernels
