// Optimizer state and the per-segment update loop.
#include "runtime/worker/optimizer.h"

#include "kernels/optim/adamw.h"
#include "kernels/optim/lamb.h"
#include "kernels/optim/lars.h"
#include "kernels/optim/sgd.h"
#include "runtime/base/check.h"
#include "runtime/worker/stored_pieces.h"

namespace colossal::worker {
namespace {

bool Adam(config::OptimizerType t) {
  return t == config::OptimizerType::kAdamW || t == config::OptimizerType::kLamb;
}

}  // namespace

Optimizer::Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params)
    : Optimizer(spec, params, params->WholeTensors(), params->SegmentData(params->WholeTensors()),
                params->SegmentGrads(params->WholeTensors())) {}

Optimizer::Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params,
                     std::vector<memory::ParamSegment> segments, std::vector<float*> weights,
                     std::vector<const float*> grads, ReduceSums reduce_sums)
    : spec_(spec),
      params_(params),
      segments_(std::move(segments)),
      weights_(std::move(weights)),
      grads_(std::move(grads)),
      reduce_sums_(std::move(reduce_sums)) {
  COL_CHECK(segments_.size() == grads_.size() && segments_.size() == weights_.size());
  decay_ = DecayMask(spec, *params);
  int64_t total = 0;
  for (const auto& s : segments_) {
    state_offset_.push_back(total);
    total += (s.length + 15) / 16 * 16;  // keep every segment's state 64-byte aligned
  }
  const memory::Place& place = params->place();
  auto allocate = [&](memory::Buffer& buffer, int64_t bytes, memory::Purpose purpose) {
    absl::StatusOr<memory::Buffer> b = place.Allocate(bytes, purpose);
    if (b.ok()) {
      buffer = std::move(*b);
    } else if (status_.ok()) {
      status_ = b.status();
    }
  };
  allocate(state1_, total * static_cast<int64_t>(sizeof(float)), memory::Purpose::kOptimizerState);
  if (Adam(spec.type)) allocate(state2_, total * static_cast<int64_t>(sizeof(float)), memory::Purpose::kOptimizerState);
  if (spec.type == config::OptimizerType::kLamb || spec.type == config::OptimizerType::kLars) {
    allocate(sums_, 2 * static_cast<int64_t>(segments_.size()) * static_cast<int64_t>(sizeof(double)),
             memory::Purpose::kWorkspace);
  }
}

std::vector<bool> DecayMask(const config::OptimizerSpec& spec, const memory::ParamStore& params) {
  std::vector<bool> decay;
  for (const memory::ParamInfo& info : params.infos()) {
    bool d = true;
    for (const std::string& s : spec.no_decay) {
      if (!s.empty() && info.name.find(s) != std::string::npos) d = false;
    }
    decay.push_back(d);
  }
  return decay;
}

void ApplyUpdate(const UpdateArgs& u, const SegmentState& state, const memory::Place& place) {
  const config::OptimizerSpec& spec = *u.spec;
  const kernels::Stream stream = place.stream();
  const float flr = static_cast<float>(u.lr);
  const bool lamb = spec.type == config::OptimizerType::kLamb;
  const bool lars = spec.type == config::OptimizerType::kLars;
  const std::vector<memory::ParamSegment>& segments = *state.segments;
  auto args_of = [&](size_t i, auto& a) {
    const memory::ParamSegment& s = segments[i];
    a.w = state.weights[i];
    a.g = state.grads[i];
    a.n = s.length;
    a.weight_decay = (*u.decay)[s.param] ? static_cast<float>(spec.weight_decay) : 0.0f;
    a.grad_scale = u.grad_scale;
  };

  if (spec.type == config::OptimizerType::kAdamW || spec.type == config::OptimizerType::kSgd) {
    for (size_t i = 0; i < segments.size(); ++i) {
      if (spec.type == config::OptimizerType::kAdamW) {
        kernels::AdamWArgs a;
        args_of(i, a);
        a.m = state.state1[i], a.v = state.state2[i];
        a.lr = flr, a.beta1 = spec.beta1, a.beta2 = spec.beta2, a.eps = spec.eps;
        a.step = u.step;
        kernels::AdamWStep(a, stream);
      } else {
        kernels::SgdArgs a;
        args_of(i, a);
        a.buf = state.state1[i];
        a.lr = flr, a.momentum = spec.momentum;
        a.nesterov = spec.nesterov ? kernels::Nesterov::kYes : kernels::Nesterov::kNo;
        kernels::SgdStep(a, stream);
      }
    }
    return;
  }

  // LAMB / LARS: phase 1 per segment, per-tensor sums (across ranks), phase 2.
  COL_CHECK(lamb || lars);
  std::vector<double> sums(2 * u.decay->size(), 0.0);
  std::vector<kernels::LambArgs> lamb_args(segments.size());
  std::vector<kernels::LarsArgs> lars_args(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    double* part = state.sums + 2 * i;
    if (lamb) {
      kernels::LambArgs& a = lamb_args[i];
      args_of(i, a);
      a.m = state.state1[i], a.v = state.state2[i];
      a.lr = flr, a.beta1 = spec.beta1, a.beta2 = spec.beta2, a.eps = spec.eps;
      a.step = u.step;
      kernels::LambMoments(a, part, stream);
    } else {
      kernels::LarsArgs& a = lars_args[i];
      args_of(i, a);
      a.buf = state.state1[i];
      a.momentum = spec.momentum;
      kernels::LarsNorms(a, part, stream);
    }
  }
  // Every segment's two sums in one copy (one wait for the stream off the host).
  std::vector<double> parts(2 * segments.size());
  place.CopyToHost(parts.data(), state.sums, static_cast<int64_t>(parts.size() * sizeof(double)));
  for (size_t i = 0; i < segments.size(); ++i) {
    sums[2 * segments[i].param] += parts[2 * i];
    sums[2 * segments[i].param + 1] += parts[2 * i + 1];
  }
  if (u.reduce_sums) u.reduce_sums(sums);
  for (size_t i = 0; i < segments.size(); ++i) {
    const int p = segments[i].param;
    if (lamb) {
      const float r = (*u.decay)[p] ? kernels::LambTrustRatio(sums[2 * p], sums[2 * p + 1],
                                                             static_cast<float>(spec.trust_clip))
                                    : 1.0f;
      kernels::LambApply(lamb_args[i], r, stream);
    } else {
      const float local_lr =
          (*u.decay)[p] ? kernels::LarsLocalLr(sums[2 * p], sums[2 * p + 1], flr,
                                              static_cast<float>(spec.trust_coef),
                                              static_cast<float>(spec.weight_decay))
                        : flr;
      kernels::LarsApply(lars_args[i], local_lr, stream);
    }
  }
}

void Optimizer::Step(double lr, float grad_scale) {
  COL_CHECK_MSG(status_.ok(), "an optimizer whose state could not be allocated was stepped");
  ++step_;
  SegmentState state;
  state.segments = &segments_;
  state.weights = weights_;
  state.grads = grads_;
  for (size_t i = 0; i < segments_.size(); ++i) {
    state.state1.push_back(state1_.as<float>() + state_offset_[i]);
    state.state2.push_back(state2_.data() ? state2_.as<float>() + state_offset_[i] : nullptr);
  }
  state.sums = sums_.as<double>();
  ApplyUpdate({&spec_, &decay_, step_, lr, grad_scale, reduce_sums_}, state, params_->place());
}

std::vector<StateTensor> Optimizer::StateTensors(const std::vector<bool>* keep,
                                                 std::deque<std::vector<float>>& gathered) {
  std::vector<StateTensor> out;
  const bool adam = state2_.data() != nullptr;
  const graph::Layout whole;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const memory::ParamSegment& s = segments_[i];
    const memory::ParamInfo& info = params_->info(s.param);
    const graph::Layout& layout = layouts_ ? (*layouts_)[s.param] : whole;
    if (keep && !(*keep)[s.param]) continue;
    auto add = [&](const char* suffix, memory::Buffer& buf) {
      // Off the host the segment's state is staged on it; the pieces are cut from the copy.
      const float* base = params_->place().HostView(buf.as<float>() + state_offset_[i], s.length, gathered);
      for (const StoredPiece& p : StoredPieces(info.name + suffix, info.shape, layout, s.offset, s.length)) {
        out.push_back({p.name, p.shape, p.Data(base, gathered)});
      }
    };
    if (adam) {
      add(StateSuffix(true, 0), state1_);
      add(StateSuffix(true, 1), state2_);
    } else {
      add(StateSuffix(false, 0), state1_);
    }
  }
  return out;
}

absl::Status Optimizer::LoadState(const checkpoint::PieceReader& reader) {
  const bool adam = state2_.data() != nullptr;
  const graph::Layout whole;
  std::vector<float> staging;  // off the host: each segment's state read here, then copied over
  for (size_t i = 0; i < segments_.size(); ++i) {
    const memory::ParamSegment& s = segments_[i];
    const memory::ParamInfo& info = params_->info(s.param);
    const graph::Layout& layout = layouts_ ? (*layouts_)[s.param] : whole;
    auto load = [&](const char* suffix, memory::Buffer& buf) -> absl::Status {
      const std::string name = info.name + suffix;
      return params_->place().FillFromHost(buf.as<float>() + state_offset_[i], s.length, staging, [&](float* dst) {
        return ReadSegment(reader, name, info.shape, layout, s.offset, s.length, dst);
      });
    };
    if (adam) {
      if (absl::Status st = load(StateSuffix(true, 0), state1_); !st.ok()) return st;
      if (absl::Status st = load(StateSuffix(true, 1), state2_); !st.ok()) return st;
    } else {
      if (absl::Status st = load(StateSuffix(false, 0), state1_); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
