// The sum kernels of reduce.h: plain loops written so that GCC vectorises them
// (checked with -fopt-info-vec), and the scalar reference.
#include "parallel/comm/ucx/reduce.h"

#include <cstring>

#include "runtime/base/check.h"

namespace colossal::parallel::ucx {
namespace {

inline uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Round-to-nearest-even of the upper half; NaN kept quiet. Branch-free so it vectorises.
inline uint16_t RoundToBf16(uint32_t u) {
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

void SumF32(float* dst, const float* a, const float* b, int64_t count) {
  // dst may alias a or b exactly (element i reads a[i], b[i] before writing dst[i]).
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) dst[i] = a[i] + b[i];
}

void SumBf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    float s = FromBits(uint32_t{a[i]} << 16) + FromBits(uint32_t{b[i]} << 16);
    dst[i] = RoundToBf16(Bits(s));
  }
}

}  // namespace

float Bf16ToFloat(uint16_t bits) { return FromBits(uint32_t{bits} << 16); }

uint16_t FloatToBf16(float value) { return RoundToBf16(Bits(value)); }

bool IsSummable(kernels::DType dtype) {
  return dtype == kernels::DType::kF32 || dtype == kernels::DType::kBF16;
}

void SumInto(void* dst, const void* a, const void* b, int64_t count, kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kF32:
      SumF32(static_cast<float*>(dst), static_cast<const float*>(a),
             static_cast<const float*>(b), count);
      return;
    case kernels::DType::kBF16:
      SumBf16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
              static_cast<const uint16_t*>(b), count);
      return;
    default:
      COL_CHECK_MSG(false, "SumInto: only f32 and bf16 are summed");
  }
}

void SumIntoRef(void* dst, const void* a, const void* b, int64_t count, kernels::DType dtype) {
  for (int64_t i = 0; i < count; ++i) {
    if (dtype == kernels::DType::kF32) {
      float x, y;
      std::memcpy(&x, static_cast<const char*>(a) + 4 * i, 4);
      std::memcpy(&y, static_cast<const char*>(b) + 4 * i, 4);
      float s = x + y;
      std::memcpy(static_cast<char*>(dst) + 4 * i, &s, 4);
    } else {
      COL_CHECK(dtype == kernels::DType::kBF16);
      uint16_t x, y;
      std::memcpy(&x, static_cast<const char*>(a) + 2 * i, 2);
      std::memcpy(&y, static_cast<const char*>(b) + 2 * i, 2);
      float s = Bf16ToFloat(x) + Bf16ToFloat(y);
      uint16_t out = FloatToBf16(s);
      std::memcpy(static_cast<char*>(dst) + 2 * i, &out, 2);
    }
  }
}

}  // namespace colossal::parallel::ucx
