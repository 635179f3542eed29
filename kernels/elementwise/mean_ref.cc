// Mean specification: a double sum divided by n, and dy/n in double broadcast into dx;
// also defines the mean and mean_backward dispatch tables and registers the float ref
// twins.
#include "kernels/elementwise/mean.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

Dispatch<MeanFn>& MeanTable() {
  static Dispatch<MeanFn> table("mean");
  return table;
}

Dispatch<MeanBackwardFn>& MeanBackwardTable() {
  static Dispatch<MeanBackwardFn> table("mean_backward");
  return table;
}

template <typename T>
void MeanRef(const T* x, T* out, int64_t n) {
  COL_CHECK(n >= 1);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
  out[0] = static_cast<T>(s / static_cast<double>(n));
}

template <typename T>
void MeanBackwardRef(const T* dy, T* dx, int64_t n, Accumulate accumulate) {
  const double g = static_cast<double>(dy[0]) / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = static_cast<T>(accumulate == Accumulate::kYes ? static_cast<double>(dx[i]) + g : g);
  }
}

template void MeanRef<float>(const float*, float*, int64_t);
template void MeanRef<double>(const double*, double*, int64_t);
template void MeanBackwardRef<float>(const float*, float*, int64_t, Accumulate);
template void MeanBackwardRef<double>(const double*, double*, int64_t, Accumulate);

namespace {
void MeanRefTwin(const float* x, float* out, int64_t n, Stream) { MeanRef(x, out, n); }
void MeanBackwardRefTwin(const float* dy, float* dx, int64_t n, Accumulate accumulate, Stream) {
  MeanBackwardRef(dy, dx, n, accumulate);
}

const Registrar<MeanFn> kMean(MeanTable(), Backend::kRef, DType::kF32, &MeanRefTwin);
const Registrar<MeanBackwardFn> kMeanBackward(MeanBackwardTable(), Backend::kRef, DType::kF32,
                                              &MeanBackwardRefTwin);
}  // namespace

}  // namespace colossal::kernels
