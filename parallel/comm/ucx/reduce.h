// Elementwise sums of the collective layer: dst = a + b over fp32 or bf16 elements.
// Owns the arithmetic of one reduction hop; does not own buffers or message order.
//
// Contract: dst[i] = a[i] + b[i] for i < count; dst may alias a or b (in place).
// fp32: one IEEE add per element (results are exact wherever the sum is representable).
// bf16: both operands widened to fp32, added, rounded once to bf16 (round to nearest
// even; NaN stays NaN) — "accumulate in fp32 within a hop, round once per hop".
// The addition is commutative bit for bit, so two ranks that add the same pair of
// buffers in either order hold identical results.
#pragma once

#include <cstdint>

#include "kernels/common/kernel.h"

namespace colossal::parallel::ucx {

// Vectorised (AVX2 through the build's -march; any alignment).
void SumInto(void* dst, const void* a, const void* b, int64_t count, kernels::DType dtype);

// Scalar reference of the same contract, for tests.
void SumIntoRef(void* dst, const void* a, const void* b, int64_t count, kernels::DType dtype);

// fp32 ↔ bf16 conversions of the contract above (round to nearest even).
float Bf16ToFloat(uint16_t bits);
uint16_t FloatToBf16(float value);

// Whether a dtype can be summed (kF32, kBF16).
bool IsSummable(kernels::DType dtype);

}  // namespace colossal::parallel::ucx
