// Learning-rate schedule.
#include "runtime/worker/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace colossal::worker {

double LearningRate(const config::OptimizerSpec& optimizer, const config::LrScheduleSpec& schedule,
                    int64_t step, int64_t total_steps) {
  const double lr = optimizer.lr;
  const int64_t warmup = schedule.warmup;
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double p = static_cast<double>(step - warmup) /
                   static_cast<double>(std::max<int64_t>(1, total_steps - 1 - warmup));
  switch (schedule.decay) {
    case config::LrDecay::kCosine:
      return schedule.min_lr + 0.5 * (lr - schedule.min_lr) * (1.0 + std::cos(M_PI * p));
    case config::LrDecay::kLinear:
      return lr - (lr - schedule.min_lr) * p;
    case config::LrDecay::kConstant:
      return lr;
  }
  return lr;
}

}  // namespace colossal::worker
