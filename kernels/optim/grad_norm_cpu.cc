// Sum-of-squares CPU twin: squares formed in double (exact for fp32 inputs) and summed
// per fixed block in four SIMD quarter-streams, blocks added in order (block_reduce.h),
// so the result is the same for every thread count.
#include "kernels/optim/block_reduce.h"
#include "kernels/optim/grad_norm.h"

namespace colossal::kernels {
namespace {

void SumSquaresCpu(const float* x, int64_t n, double* out, Stream) {
  optim_internal::BlockedSums<1>(n, out, [x](int64_t begin, int64_t end, double* sums) {
    sums[0] = optim_internal::BlockSumSquares(x + begin, end - begin);
  });
}

const Registrar<SumSquaresFn> kSumSquares(SumSquaresTable(), Backend::kCpu, DType::kF32,
                                          &SumSquaresCpu);

}  // namespace
}  // namespace colossal::kernels
