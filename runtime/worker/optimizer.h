// The optimizer of one rank: owns the optimizer state of the parameter segments it
// updates — every tensor whole on a single rank, or this rank's share under ZeRO — and
// applies one update per step through the kernels of kernels/optim.
// Weight decay groups: a parameter whose name contains any `no_decay` string gets weight
// decay 0 and, under LAMB and LARS, trust ratio 1.
// Per-tensor norms (LAMB, LARS) are summed over the tensor's segments here and then
// across ranks by `reduce_sums` when segments are shards of tensors spread over ranks.
// Gradient clipping enters as `grad_scale` (the gradients are not rewritten).
// The state lives where the parameter store does (its Place) and the kernels run on that
// place's stream; LAMB's and LARS's per-segment sums come back to the host once per step,
// and checkpoint reads and writes of the state stage through host buffers off the host.
// State tensors for checkpoints are named "<param>.exp_avg", "<param>.exp_avg_sq"
// (AdamW, LAMB) and "<param>.momentum_buffer" (LARS, SGD) as PyTorch's state dicts; a
// segment that is only part of its tensor is stored as pieces (stored_pieces.h).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "graph/layout.h"
#include "memory/allocator.h"
#include "memory/param_store.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

struct StateTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// The checkpoint name suffix of optimizer state `moment` (0 first, 1 second) of a
// parameter, as PyTorch's state dicts: ".exp_avg", ".exp_avg_sq" (AdamW, LAMB: `adam`),
// ".momentum_buffer" (LARS, SGD).
inline const char* StateSuffix(bool adam, int moment) {
  return !adam ? ".momentum_buffer" : moment == 0 ? ".exp_avg" : ".exp_avg_sq";
}

// Per parameter: whether it takes weight decay (its name holds no `no_decay` string).
std::vector<bool> DecayMask(const config::OptimizerSpec& spec, const memory::ParamStore& params);

// One update of a list of segments whose state lives wherever the caller keeps it (the
// Optimizer's own buffers, or Gemini's chunks): segment i's weights, gradient and
// state (exp_avg / momentum_buffer in state1, exp_avg_sq in state2) at the i-th
// pointers, all in `place`'s memory; `sums` scratch for two doubles per segment there
// (LAMB, LARS). Per-tensor norms are complete when every segment of a tensor is in the
// list (or `reduce_sums` adds the other ranks').
struct UpdateArgs {
  const config::OptimizerSpec* spec = nullptr;
  const std::vector<bool>* decay = nullptr;  // per parameter
  int64_t step = 0;                          // this update's number (1 first)
  double lr = 0;
  float grad_scale = 1;
  std::function<void(std::vector<double>&)> reduce_sums;
};
struct SegmentState {
  const std::vector<memory::ParamSegment>* segments = nullptr;
  std::vector<float*> weights;
  std::vector<const float*> grads;
  std::vector<float*> state1, state2;
  double* sums = nullptr;
};
void ApplyUpdate(const UpdateArgs& args, const SegmentState& state, const memory::Place& place);

class Optimizer {
 public:
  // Sums `values` elementwise over the ranks that share the tensors (in place).
  using ReduceSums = std::function<void(std::vector<double>& values)>;

  // Updates `segments` of `params`: segment i's values at weights[i], its gradient at
  // grads[i] (`params` supplies names, shapes and weight-decay groups).
  Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params,
            std::vector<memory::ParamSegment> segments, std::vector<float*> weights,
            std::vector<const float*> grads, ReduceSums reduce_sums = {});
  // Every tensor whole, gradients in the store: the single-rank optimizer.
  Optimizer(const config::OptimizerSpec& spec, memory::ParamStore* params);

  // One update at learning rate `lr`, gradients scaled by `grad_scale` first.
  void Step(double lr, float grad_scale);

  // Updates done so far (bias corrections use step() + 1 during the next Step()).
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }

  bool decays(int param) const { return decay_[param]; }
  // The segments this optimizer updates and where their gradients are.
  const std::vector<memory::ParamSegment>& segments() const { return segments_; }
  const std::vector<const float*>& grads() const { return grads_; }
  // OK, or the allocator's RESOURCE_EXHAUSTED when the state did not fit its place (the
  // optimizer must not be used then).
  const absl::Status& status() const { return status_; }
  // Bytes of optimizer state this rank holds.
  int64_t state_bytes() const { return static_cast<int64_t>(state1_.bytes() + state2_.bytes()); }

  // The layouts of the parameters (by store index) when they are tensor-parallel parts:
  // state tensors are then pieces of the global tensors (stored_pieces.h). Must outlive
  // the optimizer; null: every parameter is whole.
  void SetLayouts(const std::vector<graph::Layout>* layouts) { layouts_ = layouts; }

  // Every segment's state, or only those of the parameters `keep` marks (a part several
  // ranks of a tensor group hold is stored by one of them).
  // Pieces whose rows are not back to back in the state buffers are gathered into
  // `gathered`, which must outlive the write.
  std::vector<StateTensor> StateTensors(const std::vector<bool>* keep, std::deque<std::vector<float>>& gathered);
  // Fills this rank's state from whatever mix of whole tensors and pieces `reader` holds
  // (a checkpoint of any data-parallel degree or ZeRO stage). Errors name the tensor.
  absl::Status LoadState(const checkpoint::PieceReader& reader);

 private:
  config::OptimizerSpec spec_;
  memory::ParamStore* params_;
  std::vector<memory::ParamSegment> segments_;
  std::vector<float*> weights_;
  std::vector<const float*> grads_;
  std::vector<int64_t> state_offset_;  // per segment, into the state buffers
  ReduceSums reduce_sums_;
  std::vector<bool> decay_;            // per parameter
  memory::Buffer state1_;  // exp_avg or momentum_buffer
  memory::Buffer state2_;  // exp_avg_sq (AdamW, LAMB)
  memory::Buffer sums_;    // LAMB / LARS: two doubles per segment, written by the kernels
  absl::Status status_;
  int64_t step_ = 0;
  const std::vector<graph::Layout>* layouts_ = nullptr;
};

}  // namespace colossal::worker
