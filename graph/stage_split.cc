// Cutting a forward graph into pipeline stages at layer boundaries.
#include "graph/stage_split.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"

namespace colossal::graph {

absl::StatusOr<StageSplit> SplitStages(const Graph& graph, int stages, const std::vector<int>& layers_per_stage) {
  int top = -1;  // L + 1
  for (const Node& n : graph.nodes()) {
    if (n.backward) continue;
    if (n.layer < 0) {
      return absl::InvalidArgumentError(absl::StrCat("node ", n.id, " (", n.op,
                                                     ") belongs to no layer: the graph's builder marks none"));
    }
    top = std::max(top, n.layer);
  }
  const int L = top - 1;
  if (L < 1) return absl::InvalidArgumentError("the graph has no transformer layer to split");
  if (stages < 1 || stages > L) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline of ", stages, " stages over ", L,
                                                   " layers: every stage needs at least one layer"));
  }
  std::vector<double> layer_flops(top + 1, 0.0);
  for (const Node& n : graph.nodes()) {
    if (!n.backward) layer_flops[n.layer] += NodeFlops(graph, n);
  }

  StageSplit split;
  split.first_layer.assign(stages + 1, 0);
  if (!layers_per_stage.empty()) {
    if (static_cast<int>(layers_per_stage.size()) != stages) {
      return absl::InvalidArgumentError(absl::StrCat("layers_per_stage has ", layers_per_stage.size(),
                                                     " entries for ", stages, " stages"));
    }
    int sum = 0;
    for (int k : layers_per_stage) {
      if (k < 1) return absl::InvalidArgumentError("layers_per_stage: every stage needs at least one layer");
      sum += k;
    }
    if (sum != L) {
      return absl::InvalidArgumentError(absl::StrCat("layers_per_stage sums to ", sum, ", the model has ", L,
                                                     " layers"));
    }
    split.first_layer[0] = 1;
    for (int s = 0; s < stages; ++s) split.first_layer[s + 1] = split.first_layer[s] + layers_per_stage[s];
  } else {
    // best[s][i]: the least costliest-stage FLOPs of s stages over layers 1..i.
    std::vector<double> prefix(L + 1, 0.0);
    for (int l = 1; l <= L; ++l) prefix[l] = prefix[l - 1] + layer_flops[l];
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> best(stages + 1, std::vector<double>(L + 1, inf));
    std::vector<std::vector<int>> cut(stages + 1, std::vector<int>(L + 1, -1));
    best[0][0] = 0;
    for (int s = 1; s <= stages; ++s) {
      for (int i = s; i <= L; ++i) {
        if (s == stages && i != L) continue;
        for (int j = s - 1; j < i; ++j) {
          if (best[s - 1][j] == inf) continue;
          const double cost = prefix[i] - prefix[j] + (s == 1 ? layer_flops[0] : 0.0) +
                              (s == stages ? layer_flops[top] : 0.0);
          const double worst = std::max(best[s - 1][j], cost);
          if (worst < best[s][i]) {
            best[s][i] = worst;
            cut[s][i] = j;
          }
        }
      }
    }
    split.first_layer[stages] = L + 1;
    for (int s = stages, i = L; s >= 1; --s) {
      i = cut[s][i];
      split.first_layer[s - 1] = i + 1;
    }
  }
  auto stage_of = [&](int layer) {
    if (layer == 0) return 0;
    if (layer == top) return stages - 1;
    return static_cast<int>(std::upper_bound(split.first_layer.begin(), split.first_layer.end(), layer) -
                            split.first_layer.begin()) - 1;
  };

  split.nodes.resize(stages);
  split.flops.assign(stages, 0.0);
  split.sends.resize(stages);
  std::vector<std::set<int>> sends(stages);
  std::vector<std::set<int>> readers(graph.values().size());
  for (const Node& n : graph.nodes()) {
    if (n.backward) continue;
    const int s = stage_of(n.layer);
    split.nodes[s].push_back(n.id);
    split.flops[s] += NodeFlops(graph, n);
    for (int v : n.inputs) {
      const Value& value = graph.value(v);
      if (value.kind == ValueKind::kParam) readers[v].insert(s);
      if (value.producer < 0) continue;
      const int from = stage_of(graph.node(value.producer).layer);
      if (from < s) sends[from].insert(v);
    }
  }
  for (int s = 0; s < stages; ++s) split.sends[s].assign(sends[s].begin(), sends[s].end());
  for (int p : graph.params()) {
    if (readers[p].size() > 1) split.shared_params.push_back({p, {readers[p].begin(), readers[p].end()}});
  }
  return split;
}

}  // namespace colossal::graph
