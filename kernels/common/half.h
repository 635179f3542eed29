// The 16-bit floating types as stored: bf16 (1 sign, 8 exponent, 7 mantissa bits: fp32's
// range, 3 significant decimal digits) and IEEE fp16 (5 exponent, 10 mantissa: to 65504,
// subnormals below 2^-14). Both are uint16_t bit patterns in kernel signatures; the
// conversions here round to nearest, ties to even, as hardware does: overflow goes to
// ±inf, NaN stays a (quiet) NaN, fp16 keeps subnormals. Header-only; the CPU twins use
// these for tails and F16C/AVX2 for the vector body (kernels/convert).
#pragma once

#include <bit>
#include <cstdint>

namespace colossal::kernels {

inline uint16_t F32ToBf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

inline float Bf16ToF32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t F32ToF16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Below 2^-14: a subnormal (or zero). Scaled by 2^24 the value is the integer mantissa;
    // round it to nearest even by hand.
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to 0
    const int exp = static_cast<int>(abs >> 23);                 // 102 .. 112
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exp;  // 14 .. 24: bits dropped to reach units of 2^-24
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    const uint32_t r = q + (rem > half || (rem == half && (q & 1u)) ? 1u : 0u);
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even.
  const uint32_t rebased = abs - 0x38000000u;
  const uint32_t r = (rebased + 0x0fffu + ((rebased >> 13) & 1u)) >> 13;
  return static_cast<uint16_t>(sign | r);
}

inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    // Zero or subnormal: mant · 2^-24, exact in fp32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace colossal::kernels
