// Cast CPU twins: 8 values per step (fp16 through F16C's vcvtps2ph / vcvtph2ps, bf16
// through AVX2 integer rounding), the scalar half.h conversions for the tail; OpenMP over
// contiguous chunks above a size threshold.
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "kernels/common/half.h"
#include "kernels/convert/convert.h"

namespace colossal::kernels {
namespace {

constexpr int64_t kParallelMin = 1 << 16;

template <typename Body>
void Chunks(int64_t n, Body&& body) {
  if (n < kParallelMin || omp_in_parallel() || omp_get_max_threads() == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t begin = part == 0 ? 0 : (n * part / parts) & ~int64_t{31};
    const int64_t end = part == parts - 1 ? n : (n * (part + 1) / parts) & ~int64_t{31};
    body(begin, end);
  }
}

// 8 floats to bf16 with round-to-nearest-even; NaN lanes become quiet NaNs.
inline __m128i Bf16x8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
  // Narrow the eight 32-bit lanes (each < 2^16) to 16 bits, in order.
  const __m256i packed = _mm256_packus_epi32(r, r);  // per 128-bit lane: 4 values twice
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

void ToBf16Cpu(const float* x, uint16_t* y, int64_t n, Stream) {
  Chunks(n, [=](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), Bf16x8(_mm256_loadu_ps(x + i)));
    }
    for (; i < end; ++i) y[i] = F32ToBf16(x[i]);
  });
}

void FromBf16Cpu(const uint16_t* x, float* y, int64_t n, Stream) {
  Chunks(n, [=](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
      _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < end; ++i) y[i] = Bf16ToF32(x[i]);
  });
}

void ToF16Cpu(const float* x, uint16_t* y, int64_t n, Stream) {
  Chunks(n, [=](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < end; ++i) y[i] = F32ToF16(x[i]);
  });
}

void FromF16Cpu(const uint16_t* x, float* y, int64_t n, Stream) {
  Chunks(n, [=](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    }
    for (; i < end; ++i) y[i] = F16ToF32(x[i]);
  });
}

const Registrar<CastTo16Fn> kToBf16(CastTo16Table(), Backend::kCpu, DType::kBF16, &ToBf16Cpu);
const Registrar<CastTo16Fn> kToF16(CastTo16Table(), Backend::kCpu, DType::kF16, &ToF16Cpu);
const Registrar<Cast16ToF32Fn> kFromBf16(Cast16ToF32Table(), Backend::kCpu, DType::kBF16, &FromBf16Cpu);
const Registrar<Cast16ToF32Fn> kFromF16(Cast16ToF32Table(), Backend::kCpu, DType::kF16, &FromF16Cpu);

}  // namespace
}  // namespace colossal::kernels
