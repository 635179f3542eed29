// Gradients that are partial over a group: a parameter whole on every rank of a tensor
// group (or grid axis) whose ranks each computed part of its gradient (Megatron sequence
// parallelism's layer norms; 2d / 2.5d / 3d vectors) — Layout::partial_grad_axes. Summed
// over that axis's group before norms and the optimizer step.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "graph/layout.h"
#include "memory/param_store.h"
#include "parallel/comm/communicator.h"

namespace colossal::worker {

// Sums over `comm`, in one all-reduce, the gradients (segment i at grads[i], this rank's
// storage) of every segment whose parameter's layout (layouts[param]) is partial over
// `axis`. Nothing to sum: OK without a collective; something to sum with no `comm`:
// Internal.
absl::Status SumPartialGrads(const std::vector<graph::Layout>& layouts,
                             const std::vector<memory::ParamSegment>& segments, const std::vector<float*>& grads,
                             const std::string& axis, parallel::Communicator* comm);

}  // namespace colossal::worker
