#include "runtime/worker/loss_scaler.h"

#include <algorithm>
#include <cmath>

namespace colossal::worker {

LossScaler::LossScaler(const config::LossScaleSpec& spec, bool enabled)
    : spec_(spec), enabled_(enabled), scale_(enabled ? spec.initial : 1.0) {}

bool LossScaler::Update(double scaled_grad_norm) {
  if (!enabled_) return true;
  if (!std::isfinite(scaled_grad_norm)) {
    ++skipped_;
    good_ = 0;
    scale_ = std::max(spec_.min, scale_ / 2);
    return false;
  }
  if (++good_ >= spec_.growth_interval) {
    // Doubling past fp32's range would make every later step overflow at once.
    if (std::isfinite(scale_ * 2) && scale_ * 2 <= 1e30) scale_ *= 2;
    good_ = 0;
  }
  return true;
}

void LossScaler::Restore(const State& s) {
  if (enabled_ && s.scale > 0 && std::isfinite(s.scale)) scale_ = s.scale;
  good_ = s.good_steps;
  skipped_ = s.skipped_steps;
}

}  // namespace colossal::worker
