// Sum-of-squares CPU twin: squares formed in double (exact for fp32 inputs) and summed
// per fixed block in four SIMD quarter-streams, blocks added in order (block_reduce.h),
// so the result is the same for every thread count.
#include <array>

#include "kernels/common/backend_memory.h"
#include "runtime/base/check.h"
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
double SumSquaresToHost(const float* x, int64_t n, Stream stream) {
  double sum = 0;
  if (stream.backend == Backend::kCpu || stream.backend == Backend::kRef) {
    SumSquares(x, n, &sum, stream);
    return sum;
  }
  const BackendMemory* memory = FindBackendMemory(stream.backend);
  COL_CHECK_MSG(memory != nullptr, "SumSquaresToHost on a backend whose memory is not registered");
  // One scratch double per thread and backend, kept for the thread's life (8 bytes).
  thread_local std::array<void*, kNumBackends> scratch{};
  void*& out = scratch[static_cast<int>(stream.backend)];
  if (out == nullptr) out = memory->allocate(sizeof(double));
  SumSquares(x, n, static_cast<double*>(out), stream);
  memory->synchronize(stream);
  memory->to_host(&sum, out, sizeof(double));
  return sum;
}

}  // namespace colossal::kernels
