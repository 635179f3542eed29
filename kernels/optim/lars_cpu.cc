// LARS CPU twins. Norms: Σw² and Σg² in double per fixed block (deterministic for any
// thread count, block_reduce.h), Σg'² = grad_scale²·Σg² so no product is rounded before
// squaring. Apply: one fused fp32 pass (read w, g, buf; write w, buf: 20 bytes).
#include "kernels/optim/block_reduce.h"
#include "kernels/optim/lars.h"

namespace colossal::kernels {
namespace {

void LarsNormsCpu(const LarsArgs& a, double* sums, Stream) {
  const float* w = a.w;
  const float* g = a.g;
  // One 64 KiB block of w, then the same block of g: each a read stream of its own.
  optim_internal::BlockedSums<2>(a.n, sums, [w, g](int64_t begin, int64_t end, double* out) {
    out[0] = optim_internal::BlockSumSquares(w + begin, end - begin);
    out[1] = optim_internal::BlockSumSquares(g + begin, end - begin);
  });
  const double scale = a.grad_scale;
  sums[1] *= scale * scale;
}

template <bool kMomentum>
void LarsApplyLoop(const LarsArgs& a, float local_lr) {
  const float mu = a.momentum, wd = a.weight_decay, scale = a.grad_scale;
  float* w = a.w;
  const float* g = a.g;
  float* buf = a.buf;
  const int64_t n = a.n;
#pragma omp parallel for simd schedule(static) if (n >= optim_internal::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i];
    const float gi = scale * g[i] + wd * wi;
    const float bi = kMomentum ? mu * buf[i] + local_lr * gi : local_lr * gi;
    buf[i] = bi;
    w[i] = wi - bi;
  }
}

void LarsApplyCpu(const LarsArgs& a, float local_lr, Stream) {
  if (a.momentum != 0.0f) {
    LarsApplyLoop<true>(a, local_lr);
  } else {
    LarsApplyLoop<false>(a, local_lr);
  }
}

const Registrar<LarsNormsFn> kNorms(LarsNormsTable(), Backend::kCpu, DType::kF32,
                                    &LarsNormsCpu);
const Registrar<LarsApplyFn> kApply(LarsApplyTable(), Backend::kCpu, DType::kF32,
                                    &LarsApplyCpu);

}  // namespace
}  // namespace colossal::kernels
