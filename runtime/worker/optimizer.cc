// Optimizer state and the per-parameter update loop.
#include "runtime/worker/optimizer.h"

#include "kernels/optim/adamw.h"
#include "kernels/optim/lamb.h"
#include "kernels/optim/lars.h"
#include "kernels/optim/sgd.h"

namespace colossal::worker {

Optimizer::Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params)
    : spec_(spec), params_(params) {
  for (const memory::ParamInfo& info : params->infos()) {
    bool decay = true;
    for (const std::string& s : spec.no_decay) {
      if (!s.empty() && info.name.find(s) != std::string::npos) decay = false;
    }
    decay_.push_back(decay);
  }
  const size_t bytes = params->flat_numel() * sizeof(float);
  state1_ = memory::HostBuffer(bytes);
  if (spec.type == config::OptimizerType::kAdamW || spec.type == config::OptimizerType::kLamb) {
    state2_ = memory::HostBuffer(bytes);
  }
}

void Optimizer::Step(double lr, float grad_scale) {
  ++step_;
  const float flr = static_cast<float>(lr);
  for (int i = 0; i < params_->size(); ++i) {
    const memory::ParamInfo& info = params_->info(i);
    const float wd = decay_[i] ? static_cast<float>(spec_.weight_decay) : 0.0f;
    float* w = params_->data(i);
    const float* g = params_->grad(i);
    float* s1 = state1_.as<float>() + info.offset;
    float* s2 = state2_.data() ? state2_.as<float>() + info.offset : nullptr;
    switch (spec_.type) {
      case config::OptimizerType::kAdamW: {
        kernels::AdamWArgs a;
        a.w = w, a.g = g, a.m = s1, a.v = s2, a.n = info.numel;
        a.lr = flr, a.beta1 = spec_.beta1, a.beta2 = spec_.beta2, a.eps = spec_.eps;
        a.weight_decay = wd, a.step = step_, a.grad_scale = grad_scale;
        kernels::AdamWStep(a);
        break;
      }
      case config::OptimizerType::kLamb: {
        kernels::LambArgs a;
        a.w = w, a.g = g, a.m = s1, a.v = s2, a.n = info.numel;
        a.lr = flr, a.beta1 = spec_.beta1, a.beta2 = spec_.beta2, a.eps = spec_.eps;
        a.weight_decay = wd, a.step = step_, a.grad_scale = grad_scale;
        double sums[2];
        kernels::LambMoments(a, sums);
        const float r = decay_[i] ? kernels::LambTrustRatio(sums[0], sums[1],
                                                            static_cast<float>(spec_.trust_clip))
                                  : 1.0f;
        kernels::LambApply(a, r);
        break;
      }
      case config::OptimizerType::kLars: {
        kernels::LarsArgs a;
        a.w = w, a.g = g, a.buf = s1, a.n = info.numel;
        a.momentum = spec_.momentum, a.weight_decay = wd, a.grad_scale = grad_scale;
        double sums[2];
        kernels::LarsNorms(a, sums);
        const float local_lr =
            decay_[i] ? kernels::LarsLocalLr(sums[0], sums[1], flr,
                                             static_cast<float>(spec_.trust_coef), wd)
                      : flr;
        kernels::LarsApply(a, local_lr);
        break;
      }
      case config::OptimizerType::kSgd: {
        kernels::SgdArgs a;
        a.w = w, a.g = g, a.buf = s1, a.n = info.numel;
        a.lr = flr, a.momentum = spec_.momentum, a.weight_decay = wd, a.grad_scale = grad_scale;
        a.nesterov = spec_.nesterov ? kernels::Nesterov::kYes : kernels::Nesterov::kNo;
        kernels::SgdStep(a);
        break;
      }
    }
  }
}

std::vector<StateTensor> Optimizer::StateTensors() {
  std::vector<StateTensor> out;
  const bool adam = state2_.data() != nullptr;
  for (int i = 0; i < params_->size(); ++i) {
    const memory::ParamInfo& info = params_->info(i);
    float* s1 = state1_.as<float>() + info.offset;
    if (adam) {
      out.push_back({info.name + ".exp_avg", info.shape, s1});
      out.push_back({info.name + ".exp_avg_sq", info.shape, state2_.as<float>() + info.offset});
    } else {
      out.push_back({info.name + ".momentum_buffer", info.shape, s1});
    }
  }
  return out;
}

}  // namespace colossal::worker
