// Layer norm specification: two-pass mean/variance and the backward, accumulated in
// double; also defines the dispatch tables and registers the float twin as kRef.
// Not for hot paths: single-threaded, no vectorisation.
#include <cmath>
#include <vector>

#include "kernels/layer_norm/layer_norm.h"

namespace colossal::kernels {

Dispatch<LayerNormForwardFn>& LayerNormForwardTable() {
  static Dispatch<LayerNormForwardFn> table("layer_norm_forward");
  return table;
}

Dispatch<LayerNormBackwardFn>& LayerNormBackwardTable() {
  static Dispatch<LayerNormBackwardFn> table("layer_norm_backward");
  return table;
}

template <typename T>
void LayerNormForwardRef(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                         int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(xr[c]);
    const double m = sum / static_cast<double>(cols);
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(xr[c]) - m;
      sq += d * d;
    }
    const double var = sq / static_cast<double>(cols);  // biased, as GPT-2
    const double s = 1.0 / std::sqrt(var + static_cast<double>(eps));
    T* yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (static_cast<double>(xr[c]) - m) * s;
      yr[c] = static_cast<T>(xhat * static_cast<double>(weight[c]) +
                             static_cast<double>(bias[c]));
    }
    mean[r] = static_cast<T>(m);
    rstd[r] = static_cast<T>(s);
  }
}

template <typename T>
void LayerNormBackwardRef(const T* dy, const T* x, const T* weight, const T* mean,
                          const T* rstd, T* dx, T* dweight, T* dbias, int64_t rows,
                          int64_t cols, Accumulate dx_accumulate,
                          Accumulate dparam_accumulate) {
  std::vector<double> dw(cols, 0.0), db(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* xr = x + r * cols;
    const double m = mean[r];
    const double s = rstd[r];
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (static_cast<double>(xr[c]) - m) * s;
      const double g = static_cast<double>(dyr[c]) * static_cast<double>(weight[c]);
      sum_g += g;
      sum_gx += g * xhat;
      dw[c] += static_cast<double>(dyr[c]) * xhat;
      db[c] += static_cast<double>(dyr[c]);
    }
    const double mean_g = sum_g / static_cast<double>(cols);
    const double mean_gx = sum_gx / static_cast<double>(cols);
    T* dxr = dx + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (static_cast<double>(xr[c]) - m) * s;
      const double g = static_cast<double>(dyr[c]) * static_cast<double>(weight[c]);
      const double v = s * (g - mean_g - xhat * mean_gx);
      dxr[c] = static_cast<T>(dx_accumulate == Accumulate::kYes ? dxr[c] + v : v);
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    if (dparam_accumulate == Accumulate::kYes) {
      dweight[c] = static_cast<T>(dweight[c] + dw[c]);
      dbias[c] = static_cast<T>(dbias[c] + db[c]);
    } else {
      dweight[c] = static_cast<T>(dw[c]);
      dbias[c] = static_cast<T>(db[c]);
    }
  }
}

template void LayerNormForwardRef<float>(const float*, const float*, const float*, float*,
                                         float*, float*, int64_t, int64_t, float);
template void LayerNormForwardRef<double>(const double*, const double*, const double*,
                                          double*, double*, double*, int64_t, int64_t, float);
template void LayerNormBackwardRef<float>(const float*, const float*, const float*,
                                          const float*, const float*, float*, float*, float*,
                                          int64_t, int64_t, Accumulate, Accumulate);
template void LayerNormBackwardRef<double>(const double*, const double*, const double*,
                                           const double*, const double*, double*, double*,
                                           double*, int64_t, int64_t, Accumulate, Accumulate);

namespace {
void ForwardRefTwin(const float* x, const float* weight, const float* bias, float* y,
                    float* mean, float* rstd, int64_t rows, int64_t cols, float eps, Stream) {
  LayerNormForwardRef(x, weight, bias, y, mean, rstd, rows, cols, eps);
}
void BackwardRefTwin(const float* dy, const float* x, const float* weight, const float* mean,
                     const float* rstd, float* dx, float* dweight, float* dbias, int64_t rows,
                     int64_t cols, Accumulate dx_accumulate, Accumulate dparam_accumulate,
                     Stream) {
  LayerNormBackwardRef(dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols,
                       dx_accumulate, dparam_accumulate);
}
const Registrar<LayerNormForwardFn> kForward(LayerNormForwardTable(), Backend::kRef,
                                             DType::kF32, &ForwardRefTwin);
const Registrar<LayerNormBackwardFn> kBackward(LayerNormBackwardTable(), Backend::kRef,
                                               DType::kF32, &BackwardRefTwin);
}  // namespace

}  // namespace colossal::kernels
