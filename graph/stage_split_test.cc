// Pipeline stage split of the GPT graph: every forward node in exactly one stage at its
// layer, the embeddings first and the head last, one residual value across each cut, the
// tied wte shared by the first and last stage, FLOP balance against a brute force over
// every split, explicit layers_per_stage, backward nodes carrying their layer, and the
// errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "graph/autodiff.h"
#include "graph/executor.h"
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

// A graph with its backward, a store of its parameters (values copied by name from
// `from`, or random when null) and an executor.
struct Run {
  Graph graph;
  std::unique_ptr<memory::ParamStore> store;
  std::unique_ptr<Executor> ex;
  float* In(const std::string& name) { return ex->Data<float>(graph.Find(name)); }
};
void Start(Run& r, const memory::ParamStore* from) {
  r.store = std::make_unique<memory::ParamStore>(ParamSpecs(r.graph));
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (int i = 0; i < r.store->size(); ++i) {
    const memory::ParamInfo& info = r.store->info(i);
    if (from != nullptr) {
      std::memcpy(r.store->data(i), from->data(from->Find(info.name)), info.numel * sizeof(float));
    } else {
      for (int64_t j = 0; j < info.numel; ++j) r.store->data(i)[j] = normal(rng);
    }
  }
  auto ex = Executor::Create(&r.graph, r.store.get(), kernels::Stream{kernels::Backend::kCpu});
  REQUIRE(ex.ok());
  r.ex = std::move(*ex);
}

TEST_CASE("stage graphs with seeded backward compute the whole model's loss and every gradient") {
  const GptConfig cfg{4, 2, 16, 8, 64};
  const int64_t B = 2, T = cfg.seq_len;
  auto built = BuildGpt(cfg, B);
  REQUIRE(built.ok());
  const Graph forward = *built;  // before autodiff: what the stages are cut from
  Run whole;
  whole.graph = std::move(*built);
  REQUIRE(BuildBackward(whole.graph).ok());
  Start(whole, nullptr);
  std::mt19937 rng(11);
  std::vector<int32_t> ids(B * T), targets(B * T), positions(B * T);
  for (auto& t : ids) t = static_cast<int32_t>(rng() % cfg.vocab);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % cfg.vocab);
  FillPositions(positions.data(), B, T);
  auto feed = [&](Run& r) {
    for (auto [name, data] : {std::pair{"ids", &ids}, std::pair{"targets", &targets}, std::pair{"positions", &positions}}) {
      if (r.graph.Find(name) >= 0) std::copy(data->begin(), data->end(), r.ex->Data<int32_t>(r.graph.Find(name)));
    }
  };
  feed(whole);
  whole.In("loss_grad")[0] = 1.0f;
  whole.ex->Forward();
  whole.ex->Backward(0);
  const float loss = whole.ex->Data<float>(whole.graph.loss())[0];

  for (int stages : {2, 4}) {
    CAPTURE(stages);
    auto split = SplitStages(forward, stages);
    REQUIRE(split.ok());
    std::vector<Run> runs(stages);
    std::vector<StageGraph> parts;
    std::vector<std::vector<int>> received_grads(stages);
    for (int s = 0; s < stages; ++s) {
      auto part = BuildStageGraph(forward, *split, s);
      REQUIRE(part.ok());
      REQUIRE(part->received.size() == (s == 0 ? 0u : 1u));
      REQUIRE(part->sent.size() == (s == stages - 1 ? 0u : 1u));
      runs[s].graph = std::move(part->graph);
      auto grads = BuildBackward(runs[s].graph, part->sent, part->received);
      REQUIRE(grads.ok());
      received_grads[s] = *grads;
      for (int g : *grads) REQUIRE(g >= 0);
      parts.push_back(std::move(*part));
      Start(runs[s], whole.store.get());
      feed(runs[s]);
    }
    // Forward down the stages (each receives what the one before sent), the loss on the
    // last, then the gradients back up.
    for (int s = 0; s < stages; ++s) {
      if (s > 0) {
        const Value& sent = runs[s - 1].graph.value(parts[s - 1].sent[0]);
        std::memcpy(runs[s].ex->Data(parts[s].received[0]), runs[s - 1].ex->Data(parts[s - 1].sent[0]), sent.bytes());
      }
      runs[s].ex->Forward();
    }
    runs[stages - 1].In("loss_grad")[0] = 1.0f;
    REQUIRE(runs[stages - 1].ex->Data<float>(runs[stages - 1].graph.loss())[0] == Approx(loss).epsilon(1e-6));
    for (int s = stages - 1; s >= 0; --s) {
      if (s < stages - 1) {
        const std::string seed = runs[s].graph.value(parts[s].sent[0]).name + ".grad";
        const Value& g = runs[s + 1].graph.value(received_grads[s + 1][0]);
        std::memcpy(runs[s].In(seed), runs[s + 1].ex->Data(received_grads[s + 1][0]), g.bytes());
      }
      runs[s].ex->Backward(0);
    }
    // Every parameter's gradient: the sum over the stages that hold it (wte: first + last).
    for (int i = 0; i < whole.store->size(); ++i) {
      const memory::ParamInfo& info = whole.store->info(i);
      CAPTURE(info.name);
      std::vector<double> sum(info.numel, 0.0);
      int holders = 0;
      for (Run& r : runs) {
        const int j = r.store->Find(info.name);
        if (j < 0) continue;
        ++holders;
        for (int64_t k = 0; k < info.numel; ++k) sum[k] += r.store->grad(j)[k];
      }
      REQUIRE(holders == (info.name == "wte.weight" ? 2 : 1));
      double worst = 0, scale = 0;
      for (int64_t k = 0; k < info.numel; ++k) {
        worst = std::max(worst, std::fabs(sum[k] - whole.store->grad(i)[k]));
        scale = std::max(scale, std::fabs(static_cast<double>(whole.store->grad(i)[k])));
      }
      REQUIRE(worst <= 1e-5 * scale + 1e-7);
    }
  }
}

}  // namespace
}  // namespace colossal::graph
