// The loss reduction and its backward over n contiguous fp32 values (n >= 1):
//   Mean:          out[0] = (float)(s / n), s = Σ x[i] accumulated in double
//   MeanBackward:  dx[i] (=|+=) dy[0] / n for every i < n
// Both take their scalar on the stream's backend (out and dy are device values on a
// device backend): nothing is read or written on the host, so the mean and
// mean_backward graph ops run on any backend. out and dy are one float each.
//
// The CPU twins keep the executor's former host loops bit for bit: a sequential double
// sum, and g = dy[0] / (float)n in fp32, then dx = g or dx = dx + g in fp32. The CUDA
// twin of Mean sums in double too, in a fixed order (one block, a strided per-thread
// sum then a shared-memory tree; no atomics), so it is deterministic run to run but
// may differ from the CPU twin in the last bit of the double sum.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// Mean against the double reference: any two orders of a double sum differ by at most
// 2·(n−1)·2^-53·Σ|x| (each within γ_(n-1)·Σ|x| of the exact sum), so the means by
// 2^-52·Σ|x|; then one fp32 rounding of the quotient, which may land on the neighbouring
// float of a value that differs in the last double bits (2^-23 relative, rtol 1.2e-7).
// `abs_sum` is Σ|x|.
inline Tolerance MeanTolerance(double abs_sum) { return {std::ldexp(abs_sum, -52), 1.2e-7}; }
// MeanBackward against the reference dx (=|+=) dy/n in double: the fp32 quotient is
// within 2^-24 of dy/n (plus 2^-24 from rounding n to float above 2^24), and the fp32 add
// of kYes adds one rounding of the result: atol 1.2e-7·|dy/n|, rtol 1.2e-7.
inline Tolerance MeanBackwardTolerance(double grad) { return {1.2e-7 * std::fabs(grad), 1.2e-7}; }

using MeanFn = void(const float* x, float* out, int64_t n, Stream stream);
Dispatch<MeanFn>& MeanTable();

using MeanBackwardFn = void(const float* dy, float* dx, int64_t n, Accumulate accumulate, Stream stream);
Dispatch<MeanBackwardFn>& MeanBackwardTable();

// The specification, in double and rounded once per output.
template <typename T>
void MeanRef(const T* x, T* out, int64_t n);
template <typename T>
void MeanBackwardRef(const T* dy, T* dx, int64_t n, Accumulate accumulate);

inline void Mean(const float* x, float* out, int64_t n, Stream stream = {}) {
  MeanTable().Get(stream.backend, DType::kF32)(x, out, n, stream);
}
inline void MeanBackward(const float* dy, float* dx, int64_t n, Accumulate accumulate, Stream stream = {}) {
  MeanBackwardTable().Get(stream.backend, DType::kF32)(dy, dx, n, accumulate, stream);
}

}  // namespace colossal::kernels
