// SGD-with-momentum CPU twin: one fused fp32 pass (read w, g, buf; write w, buf: 20
// bytes per element), OpenMP-parallel and SIMD; Nesterov and momentum-0 are template
// variants so the loop carries no branches. Momentum 0 never reads buf (as the ref).
#include "kernels/optim/sgd.h"

namespace colossal::kernels {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = int64_t{1} << 15;

template <bool kNesterov, bool kMomentum>
void SgdLoop(const SgdArgs& a) {
  const float lr = a.lr, mu = a.momentum, wd = a.weight_decay, scale = a.grad_scale;
  float* w = a.w;
  const float* g = a.g;
  float* buf = a.buf;
  const int64_t n = a.n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i];
    const float gi = scale * g[i] + wd * wi;
    const float bi = kMomentum ? mu * buf[i] + gi : gi;
    buf[i] = bi;
    w[i] = wi - lr * (kNesterov ? gi + mu * bi : bi);
  }
}

void SgdStepCpu(const SgdArgs& a, Stream) {
  const bool nesterov = a.nesterov == Nesterov::kYes;
  const bool momentum = a.momentum != 0.0f;
  if (nesterov && momentum) {
    SgdLoop<true, true>(a);
  } else if (momentum) {
    SgdLoop<false, true>(a);
  } else {
    // μ = 0: Nesterov's g' + μ·buf is g' too.
    SgdLoop<false, false>(a);
  }
}

const Registrar<SgdStepFn> kSgd(SgdStepTable(), Backend::kCpu, DType::kF32, &SgdStepCpu);

}  // namespace
}  // namespace colossal::kernels
