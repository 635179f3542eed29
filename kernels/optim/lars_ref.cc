// LARS specification in double, straight from lars.h, and LarsLocalLr (the host-side
// step between the phases); also defines the dispatch tables and registers the float
// references as Backend::kRef. With momentum 0 the old buffer is not read.
#include <cmath>

#include "kernels/optim/lars.h"

namespace colossal::kernels {

Dispatch<LarsNormsFn>& LarsNormsTable() {
  static Dispatch<LarsNormsFn> table("lars_norms");
  return table;
}

Dispatch<LarsApplyFn>& LarsApplyTable() {
  static Dispatch<LarsApplyFn> table("lars_apply");
  return table;
}

float LarsLocalLr(double sum_w2, double sum_g2, float lr, float trust_coef, float weight_decay) {
  // Zero norms give trust 1; a NaN sum (overflowed gradients) propagates to the caller.
  // No-decay tensors (trust 1) are the caller's to recognise, as lars.h says: wd = 0 on
  // its own does not switch the adaptation off (timm's always_adapt behaviour).
  double trust = 1.0;
  if (sum_w2 != 0.0 && sum_g2 != 0.0) {
    const double w_norm = std::sqrt(sum_w2);
    const double g_norm = std::sqrt(sum_g2);
    trust = static_cast<double>(trust_coef) * w_norm /
            (g_norm + static_cast<double>(weight_decay) * w_norm);
  }
  return static_cast<float>(static_cast<double>(lr) * trust);
}

template <typename T>
void LarsNormsRef(const LarsArgsT<T>& a, double* sums) {
  const double scale = a.grad_scale;
  double sum_w2 = 0.0, sum_g2 = 0.0;
  for (int64_t i = 0; i < a.n; ++i) {
    const double w = a.w[i];
    const double g = scale * static_cast<double>(a.g[i]);
    sum_w2 += w * w;
    sum_g2 += g * g;
  }
  sums[0] = sum_w2;
  sums[1] = sum_g2;
}

template <typename T>
void LarsApplyRef(const LarsArgsT<T>& a, float local_lr) {
  const double mu = a.momentum, wd = a.weight_decay, scale = a.grad_scale;
  const double llr = local_lr;
  for (int64_t i = 0; i < a.n; ++i) {
    const double w = a.w[i];
    const double g = scale * static_cast<double>(a.g[i]) + wd * w;
    const double buf = (mu == 0.0 ? 0.0 : mu * static_cast<double>(a.buf[i])) + llr * g;
    a.buf[i] = static_cast<T>(buf);
    a.w[i] = static_cast<T>(w - buf);
  }
}

template void LarsNormsRef<float>(const LarsArgsT<float>&, double*);
template void LarsNormsRef<double>(const LarsArgsT<double>&, double*);
template void LarsApplyRef<float>(const LarsArgsT<float>&, float);
template void LarsApplyRef<double>(const LarsArgsT<double>&, float);

namespace {
void LarsNormsRefTwin(const LarsArgs& args, double* sums, Stream) { LarsNormsRef(args, sums); }
void LarsApplyRefTwin(const LarsArgs& args, float local_lr, Stream) {
  LarsApplyRef(args, local_lr);
}
const Registrar<LarsNormsFn> kNorms(LarsNormsTable(), Backend::kRef, DType::kF32,
                                    &LarsNormsRefTwin);
const Registrar<LarsApplyFn> kApply(LarsApplyTable(), Backend::kRef, DType::kF32,
                                    &LarsApplyRefTwin);
}  // namespace

}  // namespace colossal::kernels
