// Saving and restoring a rank's training state: parameters and optimizer state through
// runtime/checkpoint, for any (data, tensor, ZeRO) layout. Every tensor is stored whole
// under its Hugging Face name when one rank holds it whole and unsplit (a single
// process, or ZeRO 0 without tensor parallelism), else as pieces of the global tensor
// (stored_pieces.h):
//   parameters       written by the ranks of replica index 0 (data and sequence index 0;
//                    every rank under ZeRO 3),
//   optimizer state  by the ranks of replica index 0 (every rank under ZeRO 1–3),
// world rank 0 into model.safetensors / optimizer.safetensors, rank r into
// model-<r>.safetensors / optimizer-<r>.safetensors staged and moved in by rank 0; all
// behind world barriers, published atomically by rank 0. Restoring reads each held
// element range by its global offsets from every model*/optimizer* file of the step
// (pieces.h), so a checkpoint resumes under any other layout, and `colossal export`
// consolidates the pieces into one Hugging Face file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/param_store.h"
#include "graph/layout.h"
#include "graph/models/gpt.h"
#include "parallel/data_parallel/data_parallel.h"
#include "parallel/process_groups.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/gemini_state.h"
#include "runtime/worker/optimizer.h"

namespace colossal::worker {

struct TrainState {
  const config::JobSpec* spec = nullptr;
  memory::ParamStore* params = nullptr;
  Optimizer* optimizer = nullptr;
  parallel::DataParallel* dp = nullptr;  // null: one data-parallel rank
  const parallel::ProcessGroups* groups = nullptr;  // null: one rank
  // Per parameter (store index), which part of the global tensor this rank holds.
  const std::vector<graph::Layout>* layouts = nullptr;
  // Per parameter, whether this rank stores its part (a part several ranks of a tensor
  // group hold is stored by one of them); null: every part.
  const std::vector<bool>* stored = nullptr;
  // Gemini (one rank): parameters and optimizer state live in its chunks, streamed out
  // tensor by tensor and read back chunk by chunk; `optimizer` is null then.
  GeminiState* gemini = nullptr;
};

// Where this rank holds parameter values: dp->Held(), or every tensor of the store.
parallel::HeldParams Held(const TrainState& state);

// What a checkpoint's state.json records beside the job: the step, the optimizer's
// count, the last loss, fp16's loss scale and the layout it was written under.
struct StateFacts {
  int64_t steps_done = 0;
  int64_t optimizer_step = 0;
  double loss = 0;
  double loss_scale = 0;
  int64_t good_steps = 0, skipped_steps = 0;
  int64_t data = 1, tensor = 1, pipeline = 1, sequence = 1;
};
// state.json: the facts, the job's name, optimizer, tokenizer and ZeRO stage, every
// parameter's global shape (sharded and split checkpoints store pieces; `colossal export`
// consolidates them from this) and, for a GPT, its configuration.
std::string CheckpointStateJson(const config::JobSpec& spec, const StateFacts& facts,
                                const std::vector<memory::ParamStore::Spec>& shapes, const graph::GptConfig* gpt);

// Writes checkpoint `steps_done` of every rank (collective when dp is set); returns the
// step directory.
absl::StatusOr<std::string> SaveCheckpoint(const TrainState& state, int64_t steps_done,
                                           const std::string& state_json);

struct Restored {
  std::string path;
  int64_t step = 0;            // optimizer steps done
  int64_t optimizer_step = 0;
  // fp16's loss scale when the checkpoint has one (0: none; loss_scaler.h).
  double loss_scale = 0;
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;
};

// Restores from the newest checkpoint in train.checkpoint.dir, if there is one.
absl::StatusOr<std::optional<Restored>> RestoreLatest(const TrainState& state);

}  // namespace colossal::worker
