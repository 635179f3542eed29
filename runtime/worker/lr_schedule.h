// The learning-rate schedule: linear warm-up, then cosine, linear or constant decay.
// At step s (from 0) of S steps with W warm-up steps:
//   s < W:   lr · (s+1) / W
//   else:    p = (s − W) / max(1, S − 1 − W)
//            cosine:   min_lr + ½(lr − min_lr)(1 + cos(π p))
//            linear:   lr − (lr − min_lr) p
//            constant: lr
#pragma once

#include <cstdint>

#include "runtime/config/job_spec.h"

namespace colossal::worker {

double LearningRate(const config::OptimizerSpec& optimizer, const config::LrScheduleSpec& schedule,
                    int64_t step, int64_t total_steps);

}  // namespace colossal::worker
