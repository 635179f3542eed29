// Mean CPU twins: the graph ops' former host loops, kept as they were so a CPU training
// step's loss and gradients stay bit-identical: Mean is one sequential double sum (a
// parallel or multi-accumulator sum would change its last bits; the loss has one value
// per token, so the loop is short), MeanBackward an fp32 broadcast through the
// elementwise twins' loops.
#include <cstdint>

#include "kernels/elementwise/elementwise.h"
#include "kernels/elementwise/mean.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

void MeanCpu(const float* x, float* out, int64_t n, Stream) {
  COL_CHECK(n >= 1);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  out[0] = static_cast<float>(s / n);
}

void MeanBackwardCpu(const float* dy, float* dx, int64_t n, Accumulate accumulate, Stream stream) {
  const float g = dy[0] / static_cast<float>(n);
  if (accumulate == Accumulate::kYes) {
    for (int64_t i = 0; i < n; ++i) dx[i] += g;
  } else {
    Fill(dx, n, g, stream);
  }
}

const Registrar<MeanFn> kMean(MeanTable(), Backend::kCpu, DType::kF32, &MeanCpu);
const Registrar<MeanBackwardFn> kMeanBackward(MeanBackwardTable(), Backend::kCpu, DType::kF32, &MeanBackwardCpu);

}  // namespace
}  // namespace colossal::kernels
