// Eight-float vectors (GCC vector extensions) for CPU-twin reductions. GCC 12 leaves a
// `#pragma omp simd reduction(max:)` loop scalar and gives a `reduction(+:)` loop one
// accumulator, which makes every iteration wait on the add latency; kernels that reduce
// L1-resident rows keep several independent V8 accumulators instead.
// Loads and stores are unaligned (memcpy compiles to vmovups).
#pragma once

#include <cstring>

namespace colossal::kernels {

using V8 = float __attribute__((vector_size(32)));

inline V8 Load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }

inline V8 Max8(V8 a, V8 b) { return a > b ? a : b; }

// Lanes of v summed in a fixed order (0..7), so results do not depend on the compiler.
inline float HorizontalSum(V8 v) {
  float s = 0.0f;
  for (int k = 0; k < 8; ++k) s += v[k];
  return s;
}

}  // namespace colossal::kernels
