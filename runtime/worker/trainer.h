// The training loop of one rank (issue 2: a single process on the CPU backend):
// data → forward/backward over the micro-batches of each step → gradient norm and
// clipping → optimizer → metrics, periodic validation, checkpoints with exact resume,
// and a generated sample at the end.
//
// Exact resume: the loader is a pure function of the step, the LR schedule of the step,
// and a checkpoint holds parameters, optimizer state and the step; so a run resumed from
// step N produces the same per-step losses as one that never stopped.
// Data parallelism (parallel.data ranks, ZeRO 0–3): each rank reads its slice of every
// global batch, gradients are reduced bucket by bucket during the last micro-batch's
// backward (parallel/data_parallel), losses are averaged over ranks.
// Tensor parallelism 1d (parallel.tensor ranks): the ranks of a tensor group read the
// same data and each holds its part of every split parameter (graph/models/gpt.h);
// the gradient norm and the LAMB/LARS trust ratios sum split tensors over the group and
// count replicated ones once.
// Run directory: job.yaml (the canonical spec), metrics.jsonl, checkpoints/, sample.txt.
// train.resume and train.checkpoint.save of the spec decide resuming and checkpointing.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "memory/param_store.h"
#include "parallel/process_groups.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

struct StepReport {
  int64_t step = 0;  // optimizer steps done
  int64_t total_steps = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double step_ms = 0;
  double mfu = 0;
};

struct TrainOptions {
  // Compute threads; 0 picks COLOSSAL_THREADS, resources.threads_per_rank, or all cores.
  int threads = 0;
  // Terminal progress line: -1 auto (stderr is a terminal or COLOSSAL_PROGRESS=1).
  int progress = -1;
  // Print the sample (if the job asks for one) to stdout at the end.
  bool print_sample = true;
  // Called after every step and every validation (for the coordinator); may be empty.
  std::function<void(const StepReport&)> on_step;
  std::function<void(int64_t step, double val_loss)> on_val;
  // Called after the gradients of step `step` (from 0) are complete, before clipping and
  // the update (for tests and debugging); may be empty.
  std::function<void(int64_t step, const memory::ParamStore& params)> on_gradients;
  // Set to true (e.g. from a signal handler) to stop after the current step; the trainer
  // then writes a checkpoint and returns CancelledError. Under data parallelism the ranks
  // agree on stopping (any rank's flag stops all after the same step).
  const std::atomic<bool>* stop = nullptr;
  // This rank's process groups (the plan's world, data and tensor groups); null: one
  // rank. World rank 0 writes metrics, job.yaml, sample.txt and publishes checkpoints.
  const parallel::ProcessGroups* groups = nullptr;
  // Where the model state lives and the kernels run (memory/place.h); null: the host.
  // Must outlive the run.
  const memory::Place* place = nullptr;
};

struct TrainSummary {
  int64_t steps_done = 0;
  double last_loss = 0;
  double val_loss = -1;  // -1 when no validation split
  std::string sample;
  std::string last_checkpoint;
};

// The plan options of a job's parallel spec (degrees, tensor mode, ZeRO stage).
parallel::PlanOptions PlanOptionsOf(const config::ParallelSpec& parallel);

// Runs `spec` to completion. Bad input (files, vocabulary) → InvalidArgument/NotFound;
// failures while running → other codes.
absl::StatusOr<TrainSummary> Train(const config::JobSpec& spec, const TrainOptions& options);

}  // namespace colossal::worker
