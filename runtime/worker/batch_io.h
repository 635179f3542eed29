// Moving a micro-batch in and out of an executor by copy: the data windows' ids and
// targets and the positions are filled into host staging vectors and written with
// Executor::Write; the loss and the per-token losses are read back with Executor::Read.
// No code here dereferences executor memory, so the same calls feed an executor on any
// backend. Does not own the executor or the loader; not thread-safe (one per executor
// user).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "parallel/sequence/sequence_layout.h"
#include "runtime/data/loader.h"
#include "runtime/worker/model.h"

namespace colossal::worker {

class BatchIo {
 public:
  // Windows [first, first + count) of `loader`, each row the positions of `runs`, into
  // values `ids` and `targets` of `ex` (overwrite); -1 leaves that value out (the loader
  // still reads it, into the staging only). Each present value must hold count · Σ run
  // lengths ids. The staging is kept between calls, so a warm step allocates nothing.
  absl::Status FillWindows(graph::Executor& ex, int ids, int targets, const data::WindowLoader& loader,
                           int64_t first, int64_t count, const data::WindowLoader::Runs& runs);

  // Adds micro-batch rows [0, rows) of the loss in `ex` (the executor of the graph that
  // holds `model`'s loss) to the validation sums: the per-token losses of this rank's
  // sequences in range (2d: its token block) and their count, or, for a graph without
  // per-token losses, the mean loss times and plus B·T.
  absl::Status AddValidationLoss(const graph::Executor& ex, const Model& model, int64_t rows, double& sum,
                                 double& tokens);

 private:
  std::vector<int32_t> ids_, targets_;
  std::vector<float> floats_;
};

// This rank's positions of `layout` in every row of value `positions` [batch, local_len]
// of `ex` (parallel::FillPositions, staged on the host and written).
absl::Status WritePositions(graph::Executor& ex, int positions, int64_t batch,
                            const parallel::SequenceLayout& layout);

}  // namespace colossal::worker
