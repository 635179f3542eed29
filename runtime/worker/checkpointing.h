// Saving and restoring a rank's training state: parameters and optimizer state through
// runtime/checkpoint, single-rank or data-parallel.
//   one rank, or ZeRO 0:  rank 0 writes model.safetensors and optimizer.safetensors
//                         whole (Hugging Face names), as a single process would;
//   ZeRO 1, 2:            rank 0 writes model.safetensors whole; every rank writes its
//                         optimizer pieces (optimizer.safetensors for rank 0,
//                         optimizer-<r>.safetensors staged and moved in by rank 0);
//   ZeRO 3:               parameters too are pieces (model.safetensors of rank 0 and
//                         model-<r>.safetensors): `colossal export` consolidates them;
// all behind barriers, published atomically by rank 0. Restoring reads whole tensors or
// pieces from every model*/optimizer* file of the step (pieces.h), so a checkpoint
// resumes under any data-parallel degree or ZeRO stage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "memory/param_store.h"
#include "parallel/data_parallel/data_parallel.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/optimizer.h"

namespace colossal::worker {

struct TrainState {
  const config::JobSpec* spec = nullptr;
  memory::ParamStore* params = nullptr;
  Optimizer* optimizer = nullptr;
  parallel::DataParallel* dp = nullptr;  // null: one rank
};

// Where this rank holds parameter values: dp->Held(), or every tensor of the store.
parallel::HeldParams Held(const TrainState& state);

// Writes checkpoint `steps_done` of every rank (collective when dp is set); returns the
// step directory.
absl::StatusOr<std::string> SaveCheckpoint(const TrainState& state, int64_t steps_done,
                                           const std::string& state_json);

struct Restored {
  std::string path;
  int64_t step = 0;            // optimizer steps done
  int64_t optimizer_step = 0;
};

// Restores from the newest checkpoint in train.checkpoint.dir, if there is one.
absl::StatusOr<std::optional<Restored>> RestoreLatest(const TrainState& state);

}  // namespace colossal::worker
