// Vectorisable float exp and tanh for the CPU twins: branch-free, no libm calls, so a
// `#pragma omp simd` loop around them compiles to AVX2/AVX-512 code.
// Exp: Cephes-style range reduction and degree-6 polynomial, within 2 ulp of expf for
// x in [-87.3, 88.7] (inputs are clamped to that range: exp(-inf) gives ~1e-38, not 0).
// Loops vectorise only with -fno-trapping-math (set in .bazelrc): GCC will not
// if-convert the clamps otherwise.
// Tanh: 1 − 2/(exp(2x)+1); absolute error ≤ 1e-7 everywhere (relative error grows for
// |x| < 1e-3, where callers such as GELU multiply it by x anyway).
#pragma once

#include <bit>
#include <cstdint>

namespace colossal::kernels {

#pragma omp declare simd notinbranch
inline float FastExp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  // Adding 1.5·2^23 rounds x·log2(e) to the nearest integer n, which then sits in the
  // low mantissa bits: no floor() or float-to-int conversion in the loop.
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const int32_t n_int = std::bit_cast<int32_t>(shifted) - 0x4B400000;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * std::bit_cast<float>((n_int + 127) << 23);
}

#pragma omp declare simd notinbranch
inline float FastTanh(float x) {
  return 1.0f - 2.0f / (FastExp(2.0f * x) + 1.0f);
}

}  // namespace colossal::kernels
