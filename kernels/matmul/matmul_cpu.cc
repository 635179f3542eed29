// Matmul CPU twin: oneDNN's dnnl_sgemm (row-major) with the bias folded in through
// beta = 1, and a deterministic column-sum BiasGrad. Does not own the choice of
// GEMM library (that is matmul_bench's finding, see README.md).
#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

// Below this many elements of C a parallel region for the bias pass costs more than
// it saves (the pass is a memcpy-speed sweep).
constexpr int64_t kParallelMin = 1 << 16;

// C[i, :] = bias (kNo, or kNo with bias == nullptr: zeros) or C[i, :] += bias (kYes).
void PrepareC(const MatmulArgs& p) {
  const int64_t m = p.m, n = p.n, ldc = p.ldc;
  float* c = p.c;
  const float* bias = p.bias;
  if (p.accumulate == Accumulate::kYes) {
    if (bias == nullptr) return;
#pragma omp parallel for schedule(static) if (m * n >= kParallelMin)
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
    }
  } else {
#pragma omp parallel for schedule(static) if (m * n >= kParallelMin)
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      if (bias != nullptr) {
        std::memcpy(row, bias, n * sizeof(float));
      } else {
        std::memset(row, 0, n * sizeof(float));
      }
    }
  }
}

void MatmulCpu(const MatmulArgs& p, Stream) {
  COL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0);
  if (p.m == 0 || p.n == 0) return;
  COL_CHECK(p.ldc >= p.n);
  if (p.k == 0) {  // C (=|+=) bias: dnnl may reject a zero dimension.
    PrepareC(p);
    return;
  }
  COL_CHECK(p.lda >= (p.trans_a == Trans::kNo ? p.k : p.m));
  COL_CHECK(p.ldb >= (p.trans_b == Trans::kNo ? p.n : p.k));
  // beta = 0 only when C is overwritten and there is no bias: BLAS semantics then never
  // read C (so stale NaNs in the output buffer cannot leak in). Otherwise the bias is
  // placed in (or added to) C first and the product accumulates onto it.
  float beta = 1.0f;
  if (p.accumulate == Accumulate::kNo && p.bias == nullptr) {
    beta = 0.0f;
  } else if (p.bias != nullptr) {
    PrepareC(p);
  }
  // dnnl_sgemm runs on the calling thread's OpenMP team, or on the calling thread alone
  // when called from inside a parallel region.
  const dnnl_status_t status =
      dnnl_sgemm(p.trans_a == Trans::kYes ? 'T' : 'N', p.trans_b == Trans::kYes ? 'T' : 'N',
                 p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, beta, p.c, p.ldc);
  COL_CHECK_MSG(status == dnnl_success, "dnnl_sgemm rejected its arguments");
}

// Column sums in double, one contiguous column range per thread, rows in order: the
// result is deterministic, independent of the thread count, and identical to the
// reference's summation order (so it matches BiasGradRef to one fp32 rounding).
void BiasGradCpu(const float* dy, int64_t m, int64_t n, int64_t ld, float* db,
                 Accumulate accumulate, Stream) {
  COL_CHECK(m >= 0 && n >= 0);
  if (n == 0) return;
  if (m > 0) COL_CHECK(ld >= n);
  // Ranges of at least 16 columns (one cache line of db) so threads never share a line
  // of db and each row segment is a full vector width.
  constexpr int64_t kMinCols = 16;
  const bool parallel = m * n >= kParallelMin && !omp_in_parallel();
  const int64_t max_parts = parallel ? omp_get_max_threads() : 1;
  const int64_t parts = std::max<int64_t>(1, std::min(max_parts, n / kMinCols));
#pragma omp parallel for schedule(static, 1) num_threads(parts) if (parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    // Split points rounded to multiples of 16 columns; the last range takes the rest.
    const int64_t j0 = part == 0 ? 0 : (n * part / parts) / kMinCols * kMinCols;
    const int64_t j1 = part == parts - 1 ? n : (n * (part + 1) / parts) / kMinCols * kMinCols;
    const int64_t width = j1 - j0;
    std::vector<double> acc(width, 0.0);
    double* acc_p = acc.data();
    if (accumulate == Accumulate::kYes) {
      for (int64_t j = 0; j < width; ++j) acc_p[j] = db[j0 + j];
    }
    for (int64_t i = 0; i < m; ++i) {
      const float* row = dy + i * ld + j0;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) acc_p[j] += static_cast<double>(row[j]);
    }
    for (int64_t j = 0; j < width; ++j) db[j0 + j] = static_cast<float>(acc_p[j]);
  }
}

const Registrar<MatmulFn> kMatmul(MatmulTable(), Backend::kCpu, DType::kF32, &MatmulCpu);
const Registrar<BiasGradFn> kBiasGrad(BiasGradTable(), Backend::kCpu, DType::kF32,
                                      &BiasGradCpu);

}  // namespace
}  // namespace colossal::kernels
