// The model of one rank: the training graph (forward + autodiff) built from the job's
// model spec (the GPT builder or a graph file), its parameter store, and an executor.
// Also parameter initialisation (seeded, per-parameter streams, so the result does not
// depend on parameter order) and loading from safetensors files or checkpoints.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "graph/models/gpt.h"
#include "memory/param_store.h"
#include "parallel/comm/communicator.h"
#include "parallel/pipeline/runner.h"
#include "parallel/pipeline/schedule.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

// The store specs of `graph`'s parameters at their whole (global) shapes.
std::vector<memory::ParamStore::Spec> GlobalParamSpecs(const graph::Graph& graph);

struct Model {
  graph::Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<graph::Executor> executor;
  int64_t batch = 0;  // micro-batch the graph was built for
  int64_t seq = 0;    // positions per row of the graph's inputs (this rank's)
  // Sequence parallelism: the whole window the loader reads (seq · S) and which of its
  // positions this rank holds (what it feeds into ids, targets and positions).
  int64_t window = 0;
  parallel::SequenceLayout sequence;
  int64_t vocab = 0;  // rows of the embedding that "ids" index
  // Value ids of the trainer's inputs and outputs.
  int ids = -1, targets = -1, positions = -1, loss_grad = -1, loss = -1;
  // Per-token losses [batch·seq] when the loss is their mean (GPT and most graphs), else -1.
  int token_loss = -1;
  // The micro-batch's sequences token_loss covers (2d: this rank's token block).
  int64_t token_row_start = 0, token_rows = 0;
  bool is_gpt = false;
  graph::GptConfig gpt;  // when is_gpt

  // Model FLOPs of one forward+backward over the micro-batch (sum over the graph's ops).
  double flops_per_micro_batch = 0;

  // Tensor parallelism: the ranks of the group and every parameter's layout (store index
  // i is graph.params()[i]; not split when tensor_parallel is 1).
  int64_t tensor_parallel = 1;
  graph::GptTensorParallel tp;  // the mode and this rank (GPT; size 1 for graph models)
  std::vector<graph::Layout> layouts;
  // The whole (global) shape of every parameter, as a store spec.
  std::vector<memory::ParamStore::Spec> GlobalSpecs() const { return GlobalParamSpecs(graph); }

  // Pipeline parallelism (more than one stage): this rank's chunks, each a stage graph
  // with its backward, for the trainer's Runner to take; `graph` is then a copy of chunk
  // 0's graph (it lists every parameter of the rank in the store's order), `executor` is
  // null, and loss, loss_grad and token_loss are ids in chunk last_chunk's graph (-1:
  // this rank holds no loss). ids, targets and positions are looked up per chunk.
  bool pipelined = false;
  std::vector<parallel::pipeline::Chunk> chunks;
  int last_chunk = -1;
  // Parameters held by more than one pipeline rank (the tied wte), summed between them.
  std::vector<parallel::pipeline::SharedParam> shared;
  // Per store parameter: whether this stage counts it in norms and stores it (false for a
  // shared one on any holder but its first; all true without a pipeline).
  std::vector<bool> stage_owned;
  // Every parameter of the whole model (all stages) at its global shape: what
  // checkpoints describe and samples gather.
  std::vector<memory::ParamStore::Spec> model_specs;
};

// This rank's place in a pipeline: the schedule, its pipeline rank and the layers of each
// virtual stage (empty: balanced by FLOPs).
struct PipelinePlacement {
  parallel::pipeline::PipelineSchedule schedule;
  int rank = 0;
  std::vector<int> layers_per_stage;
};

// Tensor rank `rank`'s GptTensorParallel under the job's parallel.tensor (size, mode,
// depth, sequence_parallel).
graph::GptTensorParallel TensorParallelOf(const config::ParallelSpec& parallel, int64_t rank);
// Sequence rank `rank`'s GptSequenceParallel under parallel.sequence (size, mode, zigzag).
graph::GptSequenceParallel SequenceParallelOf(const config::ParallelSpec& parallel, int64_t rank);

// Builds graph + autodiff + parameter store + executor for micro-batch `batch`.
// Parameters are zero; call InitParams or LoadParams. `flat_numel` maps the flat size
// the parameters need to the size to allocate (data parallelism pads it).
// With `allocate_params` false the store keeps the layout only (ZeRO 3 holds parameters
// in shards).
// `tp` builds this rank's part of a tensor-parallel GPT (graph models: size 1 only), `sp`
// its sequence-parallel rows (the same);
// `pipeline` (more than one stage) cuts this rank's chunks out of it (Model::pipelined).
// `place` (null: the host) is where the parameters, gradients and the executor's memory
// live and which stream its kernels run on.
absl::StatusOr<std::unique_ptr<Model>> BuildModel(
    const config::JobSpec& spec, int64_t batch,
    const std::function<int64_t(int64_t)>& flat_numel = {}, bool allocate_params = true,
    const graph::GptTensorParallel& tp = {}, const PipelinePlacement* pipeline = nullptr,
    const graph::GptSequenceParallel& sp = {}, const memory::Place* place = nullptr);

// GPT-2 style initialisation from each parameter's ParamInit, seeded by (seed, name):
// every parameter whole, or just `segments` (held at data[i]) of them — the values are
// the same either way, and a tensor-parallel part holds exactly the elements of the
// whole tensor its layout names (the numbers of the single-rank run).
void InitParams(Model& model, uint64_t seed);
void InitParams(const Model& model, const std::vector<memory::ParamSegment>& segments,
                const std::vector<float*>& data, uint64_t seed);

// Loads every parameter from a safetensors file with matching names and shapes, or
// from a checkpoint: a step directory, or a checkpoint directory (its latest step), of
// any layout (whole tensors, ZeRO-3 or tensor-parallel pieces).
// Hugging Face GPT-2 files load as they are: a "transformer." prefix is dropped, the
// attention-mask buffers and the tied lm_head are skipped, and a longer wpe contributes
// its first seq_len rows. Errors name the file and the tensor; a missing tensor, a
// wrong shape or any other extra tensor is an error.
absl::Status LoadParams(memory::ParamStore& params, const std::string& path);

// Copies the elements of `whole` (every parameter at its global shape, found by name;
// model_specs or GlobalSpecs) that this rank holds (segments at data[i], through the layouts) into place.
void TakeHeld(const Model& model, const memory::ParamStore& whole,
              const std::vector<memory::ParamSegment>& segments, const std::vector<float*>& data);

// Gathers every parameter of `local` (this rank's parts, the model's local shapes) whole
// into `whole` (GlobalSpecs()) over the tensor group `tensor` (null: not split, a copy).
// Collective over the group.
absl::Status GatherWhole(const Model& model, const memory::ParamStore& local,
                         parallel::Communicator* tensor, memory::ParamStore& whole);

// The whole model from each pipeline stage's `local` store (its parameters whole: after
// any tensor or ZeRO gather), the tensors `owned` marks (per local parameter; a shared one
// on its first holder), into `all` (model_specs) summed over the pipeline group `pipe`.
// Collective over `pipe`.
absl::Status GatherStages(const memory::ParamStore& local, const std::vector<bool>& owned,
                          parallel::Communicator* pipe, memory::ParamStore& all);

// Sum of forward + backward FLOPs of every node of the graph (model FLOPs: recompute
// clones are not counted).
double GraphFlops(const graph::Graph& graph);

}  // namespace colossal::worker
