// fp16's dynamic loss scaling (train.loss_scale, job_spec.h LossScaleSpec): the loss
// seed is multiplied by scale() so small gradients survive fp16's range; after the
// backward the trainer hands Update the global norm of the scaled gradients:
//   not finite  the step is skipped (no update, the optimizer's step count unchanged),
//               the scale halves, not below min, and the good-step run restarts;
//   finite      the step runs with the gradients divided by scale(), and after
//               growth_interval finite steps in a row the scale doubles.
// Every rank sees the same global norm, so every rank decides the same. Disabled (bf16,
// fp32): the scale stays 1 and every step runs (a diverged run stops on its loss).
#pragma once

#include <cstdint>

#include "runtime/config/job_spec.h"

namespace colossal::worker {

class LossScaler {
 public:
  LossScaler(const config::LossScaleSpec& spec, bool enabled);

  float scale() const { return static_cast<float>(scale_); }
  // Whether the step with this scaled-gradient norm runs (see above); updates the scale.
  bool Update(double scaled_grad_norm);
  int64_t skipped_steps() const { return skipped_; }

  // Checkpoint state, so a resumed run continues with the same scale.
  struct State {
    double scale = 1.0;
    int64_t good_steps = 0;
    int64_t skipped_steps = 0;
  };
  State state() const { return {scale_, good_, skipped_}; }
  void Restore(const State& s);

 private:
  config::LossScaleSpec spec_;
  bool enabled_;
  double scale_ = 1.0;
  int64_t good_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace colossal::worker
