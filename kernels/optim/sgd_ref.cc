// SGD-with-momentum specification in double, straight from sgd.h; also defines the
// dispatch table and registers the float reference as Backend::kRef.
// With momentum 0 the old buffer is not read (buf ← g'), so it may be uninitialised.
#include "kernels/optim/sgd.h"

namespace colossal::kernels {

Dispatch<SgdStepFn>& SgdStepTable() {
  static Dispatch<SgdStepFn> table("sgd_step");
  return table;
}

template <typename T>
void SgdStepRef(const SgdArgsT<T>& a) {
  const double lr = a.lr, mu = a.momentum, wd = a.weight_decay, scale = a.grad_scale;
  for (int64_t i = 0; i < a.n; ++i) {
    const double w = a.w[i];
    const double g = scale * static_cast<double>(a.g[i]) + wd * w;
    const double buf = mu == 0.0 ? g : mu * static_cast<double>(a.buf[i]) + g;
    const double step = a.nesterov == Nesterov::kYes ? g + mu * buf : buf;
    a.buf[i] = static_cast<T>(buf);
    a.w[i] = static_cast<T>(w - lr * step);
  }
}

template void SgdStepRef<float>(const SgdArgsT<float>&);
template void SgdStepRef<double>(const SgdArgsT<double>&);

namespace {
void SgdStepRefTwin(const SgdArgs& args, Stream) { SgdStepRef(args); }
const Registrar<SgdStepFn> kSgd(SgdStepTable(), Backend::kRef, DType::kF32, &SgdStepRefTwin);
}  // namespace

}  // namespace colossal::kernels
