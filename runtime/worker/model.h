// The model of one rank: the training graph (forward + autodiff) built from the job's
// model spec (the GPT builder or a graph file), its parameter store, and an executor.
// Also parameter initialisation (seeded, per-parameter streams, so the result does not
// depend on parameter order) and loading from safetensors files or checkpoints.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "graph/models/gpt.h"
#include "memory/param_store.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

struct Model {
  graph::Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<graph::Executor> executor;
  int64_t batch = 0;  // micro-batch the graph was built for
  int64_t seq = 0;
  int64_t vocab = 0;  // rows of the embedding that "ids" index
  // Value ids of the trainer's inputs and outputs.
  int ids = -1, targets = -1, positions = -1, loss_grad = -1, loss = -1;
  // Per-token losses [batch·seq] when the loss is their mean (GPT and most graphs), else -1.
  int token_loss = -1;
  bool is_gpt = false;
  graph::GptConfig gpt;  // when is_gpt

  // Model FLOPs of one forward+backward over the micro-batch (sum over the graph's ops).
  double flops_per_micro_batch = 0;
};

// Builds graph + autodiff + parameter store + executor for micro-batch `batch`.
// Parameters are zero; call InitParams or LoadParams. `flat_numel` maps the flat size
// the parameters need to the size to allocate (data parallelism pads it).
// With `allocate_params` false the store keeps the layout only (ZeRO 3 holds parameters
// in shards).
absl::StatusOr<std::unique_ptr<Model>> BuildModel(
    const config::JobSpec& spec, int64_t batch,
    const std::function<int64_t(int64_t)>& flat_numel = {}, bool allocate_params = true);

// GPT-2 style initialisation from each parameter's ParamInit, seeded by (seed, name):
// every parameter whole, or just `segments` (held at data[i]) of them — the values are
// the same either way.
void InitParams(Model& model, uint64_t seed);
void InitParams(const Model& model, const std::vector<memory::ParamSegment>& segments,
                const std::vector<float*>& data, uint64_t seed);

// Loads every parameter from a safetensors file with matching names and shapes, or
// from a checkpoint: a step directory, or a checkpoint directory (its latest step).
// Hugging Face GPT-2 files load as they are: a "transformer." prefix is dropped, the
// attention-mask buffers and the tied lm_head are skipped, and a longer wpe contributes
// its first seq_len rows. Errors name the file and the tensor; a missing tensor, a
// wrong shape or any other extra tensor is an error.
absl::Status LoadParams(memory::ParamStore& params, const std::string& path);

// Sum of forward + backward FLOPs of every node of the graph.
double GraphFlops(const graph::Graph& graph);

}  // namespace colossal::worker
