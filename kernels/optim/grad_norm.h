// Sum of squares of a segment, accumulated in double: the building block of the global
// gradient norm (‖g‖ = sqrt(Σ over every segment, and over ranks)) used by clipping.
//   *out = Σ x[i]²   (overwritten; host memory for CPU twins, device memory for CUDA)
// Tolerance against the reference: rtol = 1e-12 + Fp32ReductionRtol(1) (the CPU twin
// accumulates in double too, and squares of fp32 values are exact in double; only the
// summation order differs) (SumSquaresTolerance).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

// *out: both sides accumulate in double and the square of an fp32 value is exact in
// double, so only the summation order differs: at most n·2^-53 relative (~1e-10 at
// n = 2^20), inside this bound. Relative only: the sum is ≥ 0.
inline Tolerance SumSquaresTolerance() { return {0.0, 1e-12 + Fp32ReductionRtol(1)}; }

using SumSquaresFn = void(const float* x, int64_t n, double* out, Stream stream);
Dispatch<SumSquaresFn>& SumSquaresTable();

template <typename T>
void SumSquaresRef(const T* x, int64_t n, double* out);

inline void SumSquares(const float* x, int64_t n, double* out, Stream stream = {}) {
  SumSquaresTable().Get(stream.backend, DType::kF32)(x, n, out, stream);
}

// The sum of squares of `x` (in `stream`'s backend memory) returned to the host: on a
// host backend straight into a local, on a device into a per-thread scratch double of
// that backend, copied back after the stream finishes.
double SumSquaresToHost(const float* x, int64_t n, Stream stream);

}  // namespace colossal::kernels
