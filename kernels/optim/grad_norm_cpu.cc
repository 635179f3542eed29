// Sum-of-squares CPU twin: squares formed in double (exact for fp32 inputs) and summed
// per fixed block with SIMD lanes, blocks added in order (block_reduce.h), so the result
// is the same for every thread count.
#include "kernels/optim/block_reduce.h"
#include "kernels/optim/grad_norm.h"

namespace colossal::kernels {
namespace {

void SumSquaresCpu(const float* x, int64_t n, double* out, Stream) {
  optim_internal::BlockedSums<1>(n, out, [x](int64_t begin, int64_t end, double* sums) {
    const float* xb = x + begin;  // a local: GCC does not vectorise loads via the closure
    const int64_t len = end - begin;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < len; ++i) {
      const double xi = xb[i];
      sum += xi * xi;
    }
    sums[0] = sum;
  });
}

const Registrar<SumSquaresFn> kSumSquares(SumSquaresTable(), Backend::kCpu, DType::kF32,
                                          &SumSquaresCpu);

}  // namespace
}  // namespace colossal::kernels
