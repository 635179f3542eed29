// The optimizer of one rank: owns the optimizer state of every parameter (flat buffers
// laid out like the ParamStore) and applies one update per step through the kernels of
// kernels/optim. Weight decay groups: a parameter whose name contains any `no_decay`
// string gets weight decay 0 and, under LAMB and LARS, trust ratio 1.
// Gradient clipping enters as `grad_scale` (the gradients are not rewritten).
// State tensors for checkpoints are named "<param>.exp_avg", "<param>.exp_avg_sq"
// (AdamW, LAMB) and "<param>.momentum_buffer" (LARS, SGD), as PyTorch's state dicts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "memory/host_buffer.h"
#include "memory/param_store.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

struct StateTensor {
  std::string name;
  std::vector<int64_t> shape;
  float* data = nullptr;
};

class Optimizer {
 public:
  Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params);

  // One update at learning rate `lr`, gradients scaled by `grad_scale` first.
  void Step(double lr, float grad_scale);

  // Updates done so far (bias corrections use step() + 1 during the next Step()).
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }

  bool decays(int param) const { return decay_[param]; }
  std::vector<StateTensor> StateTensors();

 private:
  config::OptimizerSpec spec_;
  memory::ParamStore* params_;
  std::vector<bool> decay_;
  memory::HostBuffer state1_;  // exp_avg or momentum_buffer
  memory::HostBuffer state2_;  // exp_avg_sq (AdamW, LAMB)
  int64_t step_ = 0;
};

}  // namespace colossal::worker
