// Layer norm CPU twin: rows in parallel (OpenMP), each row a few SIMD passes over data
// that stays in L1. Mean and variance use the shifted two-pass form (x - x[0] first), so
// rows with a large common offset (x = 1000 + noise) lose no precision.
// Backward: dx per row; dweight/dbias from per-thread partial sums (fp32 over blocks of
// rows, flushed to double) combined in thread order: deterministic for a thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/common/vec8.h"
#include "kernels/layer_norm/layer_norm.h"

namespace colossal::kernels {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
// Rows summed in fp32 before a per-thread partial is flushed into its double total.
constexpr int64_t kFlushRows = 32;
// Reductions keep four independent 8-float accumulators (vec8.h): one accumulator makes
// every pass wait on the add latency, which halves the throughput of an L1-resident row.

// Sum over c in [0, n) of a term; term8(c) gives terms c..c+7 as a vector, term1(c) one.
template <typename F8, typename F1>
inline float VecSum(int64_t n, F8 term8, F1 term1) {
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    a0 += term8(c);
    a1 += term8(c + 8);
    a2 += term8(c + 16);
    a3 += term8(c + 24);
  }
  for (; c + 8 <= n; c += 8) a0 += term8(c);
  float s = HorizontalSum((a0 + a1) + (a2 + a3));
  for (; c < n; ++c) s += term1(c);
  return s;
}

void LayerNormForwardCpu(const float* x, const float* weight, const float* bias, float* y,
                         float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                         Stream) {
  if (cols <= 0) return;
  const float inv_cols = 1.0f / static_cast<float>(cols);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    // Shift by one element of the row: x - x0 is exact when x and x0 are within a
    // factor of two (the cancellation case), so the mean of the shifted row is accurate.
    const float x0 = xr[0];
    const float sum = VecSum(
        cols, [&](int64_t c) { return Load8(xr + c) - x0; },
        [&](int64_t c) { return xr[c] - x0; });
    const float mean_shifted = sum * inv_cols;
    const float sq = VecSum(
        cols,
        [&](int64_t c) {
          const V8 d = (Load8(xr + c) - x0) - mean_shifted;
          return d * d;
        },
        [&](int64_t c) {
          const float d = (xr[c] - x0) - mean_shifted;
          return d * d;
        });
    const float s = 1.0f / std::sqrt(sq * inv_cols + eps);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      yr[c] = ((xr[c] - x0) - mean_shifted) * s * weight[c] + bias[c];
    }
    mean[r] = x0 + mean_shifted;
    rstd[r] = s;
  }
}

// One row of the backward: writes dx, adds dy*xhat and dy into the fp32 partials.
// g = dy*weight is stored once in `g_buf` so both passes see the same rounded value
// (a contracted fma in one pass only would leave g - mean(g) != 0 when it should be).
template <bool kDxAccumulate>
inline void BackwardRow(const float* dyr, const float* xr, const float* weight, float m,
                        float s, float inv_cols, int64_t cols, float* dxr, float* dw_part,
                        float* db_part, float* g_buf) {
  V8 ag0 = {}, ag1 = {}, agx0 = {}, agx1 = {};
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const V8 g0 = Load8(dyr + c) * Load8(weight + c);
    const V8 g1 = Load8(dyr + c + 8) * Load8(weight + c + 8);
    Store8(g_buf + c, g0);
    Store8(g_buf + c + 8, g1);
    ag0 += g0;
    ag1 += g1;
    agx0 += g0 * ((Load8(xr + c) - m) * s);
    agx1 += g1 * ((Load8(xr + c + 8) - m) * s);
  }
  for (; c + 8 <= cols; c += 8) {
    const V8 g0 = Load8(dyr + c) * Load8(weight + c);
    Store8(g_buf + c, g0);
    ag0 += g0;
    agx0 += g0 * ((Load8(xr + c) - m) * s);
  }
  float sum_g = HorizontalSum(ag0 + ag1);
  float sum_gx = HorizontalSum(agx0 + agx1);
  for (; c < cols; ++c) {
    const float g = dyr[c] * weight[c];
    g_buf[c] = g;
    sum_g += g;
    sum_gx += g * ((xr[c] - m) * s);
  }
  const float mean_g = sum_g * inv_cols;
  const float mean_gx = sum_gx * inv_cols;
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) {
    const float xhat = (xr[c] - m) * s;
    const float v = s * ((g_buf[c] - mean_g) - xhat * mean_gx);
    if constexpr (kDxAccumulate) {
      dxr[c] += v;
    } else {
      dxr[c] = v;
    }
    dw_part[c] += dyr[c] * xhat;
    db_part[c] += dyr[c];
  }
}

template <bool kDxAccumulate>
void BackwardRows(const float* dy, const float* x, const float* weight, const float* mean,
                  const float* rstd, float* dx, int64_t r0, int64_t r1, int64_t cols,
                  double* dw_total, double* db_total) {
  thread_local std::vector<float> part;
  if (static_cast<int64_t>(part.size()) < 3 * cols) part.resize(3 * cols);
  float* dw_part = part.data();
  float* db_part = part.data() + cols;
  float* g_buf = part.data() + 2 * cols;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t b0 = r0; b0 < r1; b0 += kFlushRows) {
    std::fill(dw_part, dw_part + 2 * cols, 0.0f);
    const int64_t b1 = std::min(r1, b0 + kFlushRows);
    for (int64_t r = b0; r < b1; ++r) {
      BackwardRow<kDxAccumulate>(dy + r * cols, x + r * cols, weight, mean[r], rstd[r],
                                 inv_cols, cols, dx + r * cols, dw_part, db_part, g_buf);
    }
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      dw_total[c] += static_cast<double>(dw_part[c]);
      db_total[c] += static_cast<double>(db_part[c]);
    }
  }
}

void LayerNormBackwardCpu(const float* dy, const float* x, const float* weight,
                          const float* mean, const float* rstd, float* dx, float* dweight,
                          float* dbias, int64_t rows, int64_t cols, Accumulate dx_accumulate,
                          Accumulate dparam_accumulate, Stream) {
  if (cols <= 0) return;
  const bool parallel = rows * cols >= kParallelMin;
  const int max_threads = parallel ? omp_get_max_threads() : 1;
  // totals[t] holds thread t's dweight (cols) then dbias (cols), in double.
  std::vector<double> totals(static_cast<size_t>(max_threads) * 2 * cols, 0.0);
  int used_threads = 1;
#pragma omp parallel num_threads(max_threads) if (parallel)
  {
    const int nt = omp_get_num_threads();
    const int t = omp_get_thread_num();
#pragma omp single
    used_threads = nt;
    // Contiguous, equal row ranges in thread order: the same split on every call.
    const int64_t r0 = rows * t / nt;
    const int64_t r1 = rows * (t + 1) / nt;
    double* dw_total = totals.data() + static_cast<size_t>(t) * 2 * cols;
    double* db_total = dw_total + cols;
    if (dx_accumulate == Accumulate::kYes) {
      BackwardRows<true>(dy, x, weight, mean, rstd, dx, r0, r1, cols, dw_total, db_total);
    } else {
      BackwardRows<false>(dy, x, weight, mean, rstd, dx, r0, r1, cols, dw_total, db_total);
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    double dw = 0.0, db = 0.0;
    for (int t = 0; t < used_threads; ++t) {
      dw += totals[static_cast<size_t>(t) * 2 * cols + c];
      db += totals[static_cast<size_t>(t) * 2 * cols + cols + c];
    }
    if (dparam_accumulate == Accumulate::kYes) {
      dweight[c] = static_cast<float>(dweight[c] + dw);
      dbias[c] = static_cast<float>(dbias[c] + db);
    } else {
      dweight[c] = static_cast<float>(dw);
      dbias[c] = static_cast<float>(db);
    }
  }
}

const Registrar<LayerNormForwardFn> kForward(LayerNormForwardTable(), Backend::kCpu,
                                             DType::kF32, &LayerNormForwardCpu);
const Registrar<LayerNormBackwardFn> kBackward(LayerNormBackwardTable(), Backend::kCpu,
                                               DType::kF32, &LayerNormBackwardCpu);

}  // namespace
}  // namespace colossal::kernels
