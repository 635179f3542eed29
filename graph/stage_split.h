// Pipeline stages: the forward graph cut into `stages` contiguous runs of whole layers
// (Node::layer, as the builder marked them). The first stage also holds the layer before
// the transformer layers (the embeddings, layer 0), the last the one after them (final
// norm, head and loss, layer L+1); the transformer layers 1..L are split either as
// `layers_per_stage` says or balanced by FLOPs (the split whose costliest stage is least,
// OpDef::flops per node). The split names what crosses each cut — the values a stage
// sends forward (its outputs read by a later stage; the gradients of the same values
// travel back) — and the parameters more than one stage reads (GPT's tied wte: embedding
// on the first stage, head on the last), whose gradients those stages sum between them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/ir.h"

namespace colossal::graph {

struct StageSplit {
  // Stage s holds transformer layers [first_layer[s], first_layer[s + 1]) (1-based, so
  // first_layer[0] = 1 and first_layer[stages] = L + 1), plus layer 0 on the first stage
  // and layer L + 1 on the last.
  std::vector<int> first_layer;
  std::vector<std::vector<int>> nodes;  // forward node ids per stage, in graph order
  std::vector<double> flops;            // forward FLOPs per stage
  // Per stage: the values it produces that a later stage reads (activations sent on).
  std::vector<std::vector<int>> sends;
  // Parameters read by nodes of more than one stage, with those stages.
  struct Shared {
    int param = -1;  // value id
    std::vector<int> stages;
  };
  std::vector<Shared> shared_params;
};

// One stage's own forward graph, cut out of the whole one: the stage's nodes (layers and
// attributes kept), the graph inputs and parameters they read (parameters in the whole
// graph's order, with their layouts), and as extra inputs — same names — the values it
// receives from earlier stages. The last stage keeps the loss. BuildBackward(graph,
// sent, received) then gives the stage's backward: seeded by the gradients that arrive
// for what it sent, producing those of what it received.
struct StageGraph {
  Graph graph;
  std::vector<int> received;  // its inputs that earlier stages produce
  std::vector<int> sent;      // its values later stages read (StageSplit::sends)
};
// `also_params` (value ids of `whole`'s parameters) are kept as parameters too, unread:
// the chunks of one pipeline rank share one parameter store, so each chunk's graph lists
// the parameters of them all, in the whole graph's order.
absl::StatusOr<StageGraph> BuildStageGraph(const Graph& whole, const StageSplit& split, int stage,
                                           const std::vector<int>& also_params = {});

// InvalidArgument when a forward node is unmarked (layer < 0) or layers are not 0..L+1,
// when `stages` is < 1 or more than L, or `layers_per_stage` (when not empty) does not
// give each of the `stages` stages >= 1 layers summing to L.
absl::StatusOr<StageSplit> SplitStages(const Graph& graph, int stages,
                                       const std::vector<int>& layers_per_stage = {});

}  // namespace colossal::graph
