// Pipeline stage split of the GPT graph: every forward node in exactly one stage at its
// layer, the embeddings first and the head last, one residual value across each cut, the
// tied wte shared by the first and last stage, FLOP balance against a brute force over
// every split, explicit layers_per_stage, backward nodes carrying their layer, and the
// errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>

#include "graph/autodiff.h"
#include "graph/models/gpt.h"
#include "graph/op_registry.h"
#include "graph/stage_split.h"

namespace colossal::graph {
namespace {

Graph Gpt(int64_t layers, const GptTensorParallel& tp = {}, int64_t vocab = 64) {
  auto g = BuildGpt({layers, 2, 16, 8, vocab}, 2, tp);
  REQUIRE(g.ok());
  return std::move(*g);
}

TEST_CASE("stage split: whole layers, embeddings first, head last, one residual per cut, wte shared") {
  const Graph g = Gpt(6);
  for (int stages : {1, 2, 3, 6}) {
    CAPTURE(stages);
    auto split = SplitStages(g, stages);
    REQUIRE(split.ok());
    std::set<int> seen;
    for (int s = 0; s < stages; ++s) {
      for (int n : split->nodes[s]) {
        REQUIRE(seen.insert(n).second);
        const int layer = g.node(n).layer;
        if (layer == 0) REQUIRE(s == 0);
        else if (layer == 7) REQUIRE(s == stages - 1);
        else REQUIRE((layer >= split->first_layer[s] && layer < split->first_layer[s + 1]));
      }
      REQUIRE(split->first_layer[s + 1] > split->first_layer[s]);
    }
    size_t forward = 0;
    for (const Node& n : g.nodes()) forward += n.backward ? 0 : 1;
    REQUIRE(seen.size() == forward);
    // Each cut carries the residual stream of its last layer, nothing else.
    for (int s = 0; s + 1 < stages; ++s) {
      REQUIRE(split->sends[s].size() == 1);
      REQUIRE(g.value(split->sends[s][0]).name ==
              "h." + std::to_string(split->first_layer[s + 1] - 2) + ".res_2");
    }
    REQUIRE(split->sends[stages - 1].empty());
    if (stages == 1) {
      REQUIRE(split->shared_params.empty());
    } else {
      REQUIRE(split->shared_params.size() == 1);
      REQUIRE(g.value(split->shared_params[0].param).name == "wte.weight");
      REQUIRE(split->shared_params[0].stages == std::vector<int>{0, stages - 1});
    }
  }
}

TEST_CASE("stage split by FLOPs: the costliest stage is the least any split gives (brute force)") {
  const Graph g = Gpt(5, {}, 1024);
  std::vector<double> layer(7, 0.0);
  for (const Node& n : g.nodes()) layer[n.layer] += NodeFlops(g, n);
  REQUIRE(layer[6] > layer[1]);  // the head outweighs a layer: balance must move cuts
  for (int stages : {2, 3, 4}) {
    CAPTURE(stages);
    auto split = SplitStages(g, stages);
    REQUIRE(split.ok());
    const double got = *std::max_element(split->flops.begin(), split->flops.end());
    // Every composition of 5 layers into `stages` parts.
    double best = 1e300;
    std::vector<int> cuts(stages - 1);
    std::function<void(int, int)> place = [&](int k, int from) {
      if (k == stages - 1) {
        std::vector<int> first = {1};
        for (int c : cuts) first.push_back(c);
        first.push_back(6);
        double worst = 0;
        for (int s = 0; s < stages; ++s) {
          double cost = (s == 0 ? layer[0] : 0) + (s == stages - 1 ? layer[6] : 0);
          for (int l = first[s]; l < first[s + 1]; ++l) cost += layer[l];
          worst = std::max(worst, cost);
        }
        best = std::min(best, worst);
        return;
      }
      for (int c = from; c <= 5 - (stages - 2 - k); ++c) {
        cuts[k] = c;
        place(k + 1, c + 1);
      }
    };
    place(0, 2);
    REQUIRE(got == Approx(best).epsilon(1e-12));
  }
}

TEST_CASE("stage split: explicit layers_per_stage, backward nodes in their layer, errors named") {
  Graph g = Gpt(4);
  auto split = SplitStages(g, 2, {3, 1});
  REQUIRE(split.ok());
  REQUIRE(split->first_layer == std::vector<int>{1, 4, 5});
  REQUIRE(BuildBackward(g).ok());
  for (const Node& n : g.nodes()) {
    if (n.backward) REQUIRE(n.layer >= 0);
  }
  auto message = [&](int stages, std::vector<int> per) {
    auto s = SplitStages(g, stages, per);
    REQUIRE(!s.ok());
    return std::string(s.status().message());
  };
  CHECK(message(5, {}) == "pipeline of 5 stages over 4 layers: every stage needs at least one layer");
  CHECK(message(2, {2, 1}) == "layers_per_stage sums to 3, the model has 4 layers");
  CHECK(message(2, {4, 0}) == "layers_per_stage: every stage needs at least one layer");
  CHECK(message(2, {4}) == "layers_per_stage has 1 entries for 2 stages");
  // Tensor-parallel graphs split the same way (1d, rank 0 of 2: its own residual).
  auto tp = SplitStages(Gpt(4, {2, 0, "tensor"}), 2);
  REQUIRE(tp.ok());
  REQUIRE(tp->sends[0].size() == 1);
  Graph unmarked;
  const int x = unmarked.AddInput("x", {2}, DType::kF32);
  REQUIRE(Apply(unmarked, "gelu", {x}).ok());
  REQUIRE_THAT(std::string(SplitStages(unmarked, 1).status().message()), Catch::Contains("belongs to no layer"));
}

}  // namespace
}  // namespace colossal::graph
