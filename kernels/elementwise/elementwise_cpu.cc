// Elementwise CPU twins: OpenMP-parallel SIMD loops (static schedule, split points on
// 64-byte boundaries) above a size threshold, single-threaded below it or when called
// from inside a parallel region. Stores are peeled to 32-byte alignment (unaligned AVX
// stores that split cache lines cost up to 1.5x at L1/L2 sizes). No __restrict: Add
// allows out == a or out == b, which is safe because each element is read before it
// is written at the same index.
#include <immintrin.h>
#include <omp.h>

#include <bit>
#include <cstdint>
#include <cstring>

#include "kernels/elementwise/elementwise.h"

namespace colossal::kernels {
namespace {

// Below this many elements (128 KiB per stream) a parallel region costs more than it
// saves; see elementwise_bench.
constexpr int64_t kParallelMin = 1 << 15;

// Runs body(begin, end) over [0, n) in one contiguous chunk per thread, chunk bounds
// rounded to 16 floats so threads never write the same cache line of an aligned buffer.
template <typename Body>
void ParallelChunks(int64_t n, Body&& body) {
  if (n < kParallelMin || omp_in_parallel() || omp_get_max_threads() == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t parts = omp_get_num_threads();
    const int64_t part = omp_get_thread_num();
    const int64_t begin = part == 0 ? 0 : (n * part / parts) & ~int64_t{15};
    const int64_t end = part == parts - 1 ? n : (n * (part + 1) / parts) & ~int64_t{15};
    body(begin, end);
  }
}

// out[i] = value(i) for i in [begin, end): a scalar head up to the first 32-byte
// aligned element of out, then one SIMD loop with aligned stores.
template <typename Value>
inline void StoreLoop(float* out, int64_t begin, int64_t end, Value value) {
  if (end <= begin) return;
  const int64_t to_aligned =
      static_cast<int64_t>((32 - reinterpret_cast<uintptr_t>(out + begin) % 32) % 32) /
      static_cast<int64_t>(sizeof(float));
  const int64_t mid = begin + (to_aligned < end - begin ? to_aligned : end - begin);
  for (int64_t i = begin; i < mid; ++i) out[i] = value(i);
  float* aligned = static_cast<float*>(__builtin_assume_aligned(out + mid, 32));
  const int64_t count = end - mid;
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) aligned[i] = value(mid + i);
}

void AddCpu(const float* a, const float* b, float* out, int64_t n, Stream) {
  ParallelChunks(n, [=](int64_t begin, int64_t end) {
    StoreLoop(out, begin, end, [=](int64_t i) { return a[i] + b[i]; });
  });
}

void AddIntoCpu(const float* src, float* dst, int64_t n, Accumulate accumulate, Stream) {
  if (accumulate == Accumulate::kYes) {
    ParallelChunks(n, [=](int64_t begin, int64_t end) {
      StoreLoop(dst, begin, end, [=](int64_t i) { return dst[i] + src[i]; });
    });
  } else if (src != dst) {
    ParallelChunks(n, [=](int64_t begin, int64_t end) {
      if (end > begin) std::memcpy(dst + begin, src + begin, (end - begin) * sizeof(float));
    });
  }
}

void ScaleCpu(float* x, int64_t n, float alpha, Stream) {
  ParallelChunks(n, [=](int64_t begin, int64_t end) {
    StoreLoop(x, begin, end, [=](int64_t i) { return x[i] * alpha; });
  });
}

// Fills of at least this many floats (16 MiB) bypass the caches with streaming stores:
// no read-for-ownership of lines that are wholly overwritten. 2-4x faster than memset
// or plain stores from 34 MB up on this machine (matters for zeroing a whole model's
// gradients or a 50257 x 768 embedding gradient); equal at 17 MB.
constexpr int64_t kStreamMin = int64_t{1} << 22;

void StreamFill(float* x, int64_t begin, int64_t end, float value) {
  if (end <= begin) return;
  int64_t i = begin;
  while (i < end && reinterpret_cast<uintptr_t>(x + i) % 32 != 0) x[i++] = value;
  const __m256 v = _mm256_set1_ps(value);
  for (; i + 8 <= end; i += 8) _mm256_stream_ps(x + i, v);
  for (; i < end; ++i) x[i] = value;
  _mm_sfence();  // streaming stores are weakly ordered: publish before returning
}

void FillCpu(float* x, int64_t n, float value, Stream) {
  if (n >= kStreamMin) {
    ParallelChunks(n, [=](int64_t begin, int64_t end) { StreamFill(x, begin, end, value); });
    return;
  }
  if (std::bit_cast<uint32_t>(value) == 0) {  // +0.0 (not -0.0): libc's memset
    ParallelChunks(n, [=](int64_t begin, int64_t end) {
      if (end > begin) std::memset(x + begin, 0, (end - begin) * sizeof(float));
    });
    return;
  }
  ParallelChunks(n, [=](int64_t begin, int64_t end) {
    StoreLoop(x, begin, end, [=](int64_t) { return value; });
  });
}

const Registrar<AddFn> kAdd(AddTable(), Backend::kCpu, DType::kF32, &AddCpu);
const Registrar<AddIntoFn> kAddInto(AddIntoTable(), Backend::kCpu, DType::kF32, &AddIntoCpu);
const Registrar<ScaleFn> kScale(ScaleTable(), Backend::kCpu, DType::kF32, &ScaleCpu);
const Registrar<FillFn> kFill(FillTable(), Backend::kCpu, DType::kF32, &FillCpu);

}  // namespace
}  // namespace colossal::kernels
