// A rank's pipeline stage: its runner fed from the data windows.
#include "runtime/worker/pipeline_stage.h"

#include <string>

#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace colossal::worker {

namespace pp = parallel::pipeline;

absl::StatusOr<std::unique_ptr<PipelineStage>> PipelineStage::Create(const pp::PipelineSchedule& schedule, int rank,
                                                                     Model& model, parallel::Communicator* pipe,
                                                                     SetupFn setup) {
  std::unique_ptr<PipelineStage> s(new PipelineStage());
  s->runs_ = model.sequence.Runs();
  s->schedule_ = schedule;
  s->rank_ = rank;
  s->pipe_ = pipe;
  std::vector<const graph::Graph*> graphs;
  for (const pp::Chunk& c : model.chunks) {
    graphs.push_back(c.graph.get());
    s->ids_.push_back(c.graph->Find("ids"));
    s->targets_.push_back(c.graph->Find("targets"));
  }
  ASSIGN_OR_RETURN(s->runner_, pp::Runner::Create(schedule, rank, std::move(model.chunks), model.params.get(), pipe,
                                                  [graphs, setup](int c, graph::Executor& ex) {
                                                    return setup(*graphs[c], ex);
                                                  }));
  return s;
}

void PipelineStage::Feed(int c, graph::Executor& ex, const data::WindowLoader& loader, int64_t batch, int64_t first) {
  const int ids = ids_[c], targets = targets_[c];
  if (ids < 0 && targets < 0) return;
  // The runner's feed returns nothing, so a failed copy (a value without storage, which
  // only a wrong graph gives) is a programmer error here.
  const absl::Status s = batch_io_.FillWindows(ex, ids, targets, loader, first, batch, runs_);
  COL_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
}

absl::Status PipelineStage::Step(const data::WindowLoader& loader, int64_t batch,
                                 const std::function<int64_t(int m)>& first, const std::vector<pp::SharedParam>& shared,
                                 const pp::Runner::LossFn& on_loss) {
  RETURN_IF_ERROR(runner_->Step(
      [&](int c, int m, graph::Executor& ex) { Feed(c, ex, loader, batch, first(m)); }, on_loss));
  RETURN_IF_ERROR(runner_->SumSharedGrads(shared));
  ASSIGN_OR_RETURN(timelines_, pp::GatherTimelines(schedule_, rank_, runner_->last_timeline(), pipe_));
  bubble_ = pp::MeasuredBubble(timelines_);
  return absl::OkStatus();
}

absl::Status PipelineStage::Forward(const data::WindowLoader& loader, int64_t batch, int64_t first,
                                    const pp::Runner::LossFn& on_loss) {
  return runner_->Forward([&](int c, int, graph::Executor& ex) { Feed(c, ex, loader, batch, first); }, on_loss);
}

}  // namespace colossal::worker
