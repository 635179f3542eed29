// Casts between fp32 and the 16-bit types (kernels/common/half.h), over n contiguous
// values; the 16-bit side is uint16_t bit patterns, its type the table's dtype (kBF16 or
// kF16):
//   CastTo16:   y = round_to_nearest_even(x)   (overflow ±inf, NaN a quiet NaN)
//   Cast16ToF32: y = x                          (exact: every 16-bit value is an fp32)
// Mixed precision uses them to make the low-precision operands of a GEMM and to read the
// 16-bit values back. Tolerance against the reference: exact (bit-identical).
#pragma once

#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"

namespace colossal::kernels {

using CastTo16Fn = void(const float* x, uint16_t* y, int64_t n, Stream stream);
Dispatch<CastTo16Fn>& CastTo16Table();

using Cast16ToF32Fn = void(const uint16_t* x, float* y, int64_t n, Stream stream);
Dispatch<Cast16ToF32Fn>& Cast16ToF32Table();

// The specification: rounds through double arithmetic (scale by the ulp, nearbyint, scale
// back), independent of the bit tricks the fast twins use.
void CastTo16Ref(DType dtype, const float* x, uint16_t* y, int64_t n);
void Cast16ToF32Ref(DType dtype, const uint16_t* x, float* y, int64_t n);

inline void CastTo16(DType dtype, const float* x, uint16_t* y, int64_t n, Stream stream = {}) {
  CastTo16Table().Get(stream.backend, dtype)(x, y, n, stream);
}
inline void Cast16ToF32(DType dtype, const uint16_t* x, float* y, int64_t n, Stream stream = {}) {
  Cast16ToF32Table().Get(stream.backend, dtype)(x, y, n, stream);
}

}  // namespace colossal::kernels
