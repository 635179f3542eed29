// AdamW specification: every element updated in double straight from the formulas in
// adamw.h (bias corrections via pow); also defines the dispatch table and registers the
// float reference as Backend::kRef.
#include <cmath>

#include "kernels/optim/adamw.h"

namespace colossal::kernels {

Dispatch<AdamWStepFn>& AdamWStepTable() {
  static Dispatch<AdamWStepFn> table("adamw_step");
  return table;
}

template <typename T>
void AdamWStepRef(const AdamWArgsT<T>& a) {
  COL_CHECK(a.step >= 1);
  const double lr = a.lr, beta1 = a.beta1, beta2 = a.beta2, eps = a.eps;
  const double wd = a.weight_decay, scale = a.grad_scale;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(a.step));
  for (int64_t i = 0; i < a.n; ++i) {
    const double g = scale * static_cast<double>(a.g[i]);
    double w = a.w[i];
    w -= lr * wd * w;
    const double m = beta1 * static_cast<double>(a.m[i]) + (1.0 - beta1) * g;
    const double v = beta2 * static_cast<double>(a.v[i]) + (1.0 - beta2) * g * g;
    w -= lr * (m / bc1) / (std::sqrt(v / bc2) + eps);
    a.w[i] = static_cast<T>(w);
    a.m[i] = static_cast<T>(m);
    a.v[i] = static_cast<T>(v);
  }
}

template void AdamWStepRef<float>(const AdamWArgsT<float>&);
template void AdamWStepRef<double>(const AdamWArgsT<double>&);

namespace {
void AdamWStepRefTwin(const AdamWArgs& args, Stream) { AdamWStepRef(args); }
const Registrar<AdamWStepFn> kAdamW(AdamWStepTable(), Backend::kRef, DType::kF32,
                                    &AdamWStepRefTwin);
}  // namespace

}  // namespace colossal::kernels
