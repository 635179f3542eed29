// LAMB specification in double, straight from lamb.h, and LambTrustRatio (the host-side
// step between the phases); also defines the dispatch tables and registers the float
// references as Backend::kRef. Phase 1 forms u from the m and v it stores (rounded to
// T), so phase 2's recomputed u is the very u whose norm phase 1 returned.
#include <cmath>

#include "kernels/optim/lamb.h"

namespace colossal::kernels {

Dispatch<LambMomentsFn>& LambMomentsTable() {
  static Dispatch<LambMomentsFn> table("lamb_moments");
  return table;
}

Dispatch<LambApplyFn>& LambApplyTable() {
  static Dispatch<LambApplyFn> table("lamb_apply");
  return table;
}

float LambTrustRatio(double sum_w2, double sum_u2, float trust_clip) {
  // 1 when either norm is 0; otherwise ‖w‖/‖u‖ clamped to [0, trust_clip]. The clamp is
  // on the ratio only, as in tools/reference/make_goldens.py and apex's FusedLAMB (it
  // matters only for trust_clip < 1). A NaN sum (overflowed gradients) propagates.
  if (sum_w2 == 0.0 || sum_u2 == 0.0) return 1.0f;
  const double r = std::sqrt(sum_w2 / sum_u2);
  const double clip = trust_clip;
  return static_cast<float>(r > clip ? clip : r);
}

namespace {

struct LambScalars {
  double beta1, beta2, eps, wd, scale, bc1, bc2;
};

template <typename T>
LambScalars Scalars(const LambArgsT<T>& a) {
  COL_CHECK(a.step >= 1);
  const double beta1 = a.beta1, beta2 = a.beta2;
  return {beta1,
          beta2,
          a.eps,
          a.weight_decay,
          a.grad_scale,
          1.0 - std::pow(beta1, static_cast<double>(a.step)),
          1.0 - std::pow(beta2, static_cast<double>(a.step))};
}

double Update(const LambScalars& s, double m, double v, double w) {
  return (m / s.bc1) / (std::sqrt(v / s.bc2) + s.eps) + s.wd * w;
}

}  // namespace

template <typename T>
void LambMomentsRef(const LambArgsT<T>& a, double* sums) {
  const LambScalars s = Scalars(a);
  double sum_w2 = 0.0, sum_u2 = 0.0;
  for (int64_t i = 0; i < a.n; ++i) {
    const double g = s.scale * static_cast<double>(a.g[i]);
    a.m[i] = static_cast<T>(s.beta1 * static_cast<double>(a.m[i]) + (1.0 - s.beta1) * g);
    a.v[i] = static_cast<T>(s.beta2 * static_cast<double>(a.v[i]) + (1.0 - s.beta2) * g * g);
    const double w = a.w[i];
    const double u = Update(s, a.m[i], a.v[i], w);
    sum_w2 += w * w;
    sum_u2 += u * u;
  }
  sums[0] = sum_w2;
  sums[1] = sum_u2;
}

template <typename T>
void LambApplyRef(const LambArgsT<T>& a, float trust_ratio) {
  const LambScalars s = Scalars(a);
  const double step = static_cast<double>(a.lr) * static_cast<double>(trust_ratio);
  for (int64_t i = 0; i < a.n; ++i) {
    const double w = a.w[i];
    a.w[i] = static_cast<T>(w - step * Update(s, a.m[i], a.v[i], w));
  }
}

template void LambMomentsRef<float>(const LambArgsT<float>&, double*);
template void LambMomentsRef<double>(const LambArgsT<double>&, double*);
template void LambApplyRef<float>(const LambArgsT<float>&, float);
template void LambApplyRef<double>(const LambArgsT<double>&, float);

namespace {
void LambMomentsRefTwin(const LambArgs& args, double* sums, Stream) {
  LambMomentsRef(args, sums);
}
void LambApplyRefTwin(const LambArgs& args, float trust_ratio, Stream) {
  LambApplyRef(args, trust_ratio);
}
const Registrar<LambMomentsFn> kMoments(LambMomentsTable(), Backend::kRef, DType::kF32,
                                        &LambMomentsRefTwin);
const Registrar<LambApplyFn> kApply(LambApplyTable(), Backend::kRef, DType::kF32,
                                    &LambApplyRefTwin);
}  // namespace

}  // namespace colossal::kernels
