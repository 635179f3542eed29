// This rank's pipeline stage in a training run: the schedule, the interpreter over the
// rank's chunks (taken from the Model), which chunk graphs read the data windows (ids on
// the first virtual stage, targets on the last), and after each step every stage's timed
// actions and the measured bubble.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "parallel/comm/communicator.h"
#include "parallel/pipeline/runner.h"
#include "parallel/pipeline/schedule.h"
#include "runtime/data/loader.h"
#include "runtime/worker/batch_io.h"
#include "runtime/worker/model.h"

namespace colossal::worker {

class PipelineStage {
 public:
  // Binds a new slot executor of a chunk (its graph): process groups, fixed inputs.
  using SetupFn = std::function<absl::Status(const graph::Graph& chunk, graph::Executor& ex)>;

  // Takes `model`'s chunks (model.pipelined) for pipeline rank `rank` of `pipe`.
  static absl::StatusOr<std::unique_ptr<PipelineStage>> Create(const parallel::pipeline::PipelineSchedule& schedule,
                                                               int rank, Model& model, parallel::Communicator* pipe,
                                                               SetupFn setup);

  // One optimizer step: micro-batch m reads `batch` windows of `loader` from first(m); the
  // last stage's losses go to `on_loss`; then the gradients of `shared` are summed between
  // their holders and every stage's timelines gathered (collective over the pipeline).
  absl::Status Step(const data::WindowLoader& loader, int64_t batch, const std::function<int64_t(int m)>& first,
                    const std::vector<parallel::pipeline::SharedParam>& shared,
                    const parallel::pipeline::Runner::LossFn& on_loss);
  // The forward of windows [first, first + batch) of `loader` through every stage.
  absl::Status Forward(const data::WindowLoader& loader, int64_t batch, int64_t first,
                       const parallel::pipeline::Runner::LossFn& on_loss);

  const parallel::pipeline::PipelineSchedule& schedule() const { return schedule_; }
  int num_chunks() const { return runner_->num_chunks(); }
  // The last step's: every stage's timed compute actions, and 1 − busy / (P · span).
  const std::vector<std::vector<parallel::pipeline::TimedAction>>& timelines() const { return timelines_; }
  double bubble() const { return bubble_; }

 private:
  PipelineStage() = default;
  // Chunk `c`'s data inputs in `ex` from `batch` windows of `loader` at `first`.
  void Feed(int c, graph::Executor& ex, const data::WindowLoader& loader, int64_t batch, int64_t first);

  parallel::pipeline::PipelineSchedule schedule_;
  int rank_ = 0;
  parallel::Communicator* pipe_ = nullptr;
  std::unique_ptr<parallel::pipeline::Runner> runner_;
  std::vector<int> ids_, targets_;  // per chunk, or -1
  BatchIo batch_io_;                // the chunks' ids and targets, staged on the host
  data::WindowLoader::Runs runs_;   // the positions of each window this rank holds
  std::vector<std::vector<parallel::pipeline::TimedAction>> timelines_;
  double bubble_ = -1;
};

}  // namespace colossal::worker
