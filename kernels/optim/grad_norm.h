// Sum of squares of a segment, accumulated in double: the building block of the global
// gradient norm (‖g‖ = sqrt(Σ over every segment, and over ranks)) used by clipping.
//   *out = Σ x[i]²   (overwritten; host memory for CPU twins, device memory for CUDA)
// Tolerance against the reference: rtol = 1e-12 + Fp32ReductionRtol(1) (the CPU twin
// accumulates in double too; only the final rounding of each product differs).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"

namespace colossal::kernels {

using SumSquaresFn = void(const float* x, int64_t n, double* out, Stream stream);
Dispatch<SumSquaresFn>& SumSquaresTable();

template <typename T>
void SumSquaresRef(const T* x, int64_t n, double* out);

inline void SumSquares(const float* x, int64_t n, double* out, Stream stream = {}) {
  SumSquaresTable().Get(stream.backend, DType::kF32)(x, n, out, stream);
}

}  // namespace colossal::kernels
