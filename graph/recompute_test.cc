// Recompute against the plain backward on the small GPT: the same loss and the same
// parameter gradients (bit for bit: the clones run the same kernels on the same inputs)
// for every layer, every other layer and the first layer recomputed, also with the
// weight gradients deferred and split off (zero-bubble); a smaller activation arena; the
// clones placed before their readers; bad requests named. And the blockwise attention op
// (GptConfig::block_attention) against the fused one: the same loss and gradients within
// fp32 rounding, alone and recomputed, with its O(T) state in place of the T×T one.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>

#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/models/gpt.h"
#include "graph/recompute.h"
#include "graph/schedule.h"

namespace colossal::graph {
namespace {

const GptConfig kCfg{4, 2, 16, 8, 64};
constexpr int64_t kBatch = 2;

struct Result {
  float loss = 0;
  std::vector<std::vector<float>> grads;
  int64_t arena = 0;
};

Result Run(Graph& g, bool split) {
  memory::ParamStore store(ParamSpecs(g));
  for (int i = 0; i < store.size(); ++i) {
    std::mt19937 rng(static_cast<uint32_t>(i + 7));
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (int64_t j = 0; j < store.info(i).numel; ++j) store.data(i)[j] = normal(rng);
  }
  Schedule order = DefaultSchedule(g);
  const absl::Status valid = ValidateSchedule(g, order);
  INFO(valid.message());
  REQUIRE(valid.ok());
  if (split) {
    order = SplitBackward(g, order);
    // Clones only weight gradients read run with them, in the W part.
    int moved = 0;
    for (size_t t = order.num_forward + order.num_backward_input; t < order.entries.size(); ++t) {
      moved += order.entries[t].phase == Phase::kRecompute;
    }
    bool has_clones = false;
    for (const Node& n : g.nodes()) has_clones = has_clones || n.recompute_of >= 0;
    INFO("clones in the W part: " << moved);
    CHECK((moved > 0) == has_clones);
  }
  auto ex = Executor::Create(&g, &store, order);
  REQUIRE(ex.ok());
  FillPositions((*ex)->Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
  std::mt19937 rng(3);
  for (const char* name : {"ids", "targets"}) {
    int32_t* t = (*ex)->Data<int32_t>(g.Find(name));
    for (int64_t i = 0; i < kBatch * kCfg.seq_len; ++i) t[i] = static_cast<int32_t>(rng() % kCfg.vocab);
  }
  (*ex)->Data<float>(g.loss_seed())[0] = 1.0f;
  (*ex)->Forward();
  if (split) {
    (*ex)->BackwardInput(0);
    (*ex)->BackwardWeight(0);
  } else {
    (*ex)->Backward(0);
  }
  REQUIRE((*ex)->status().ok());
  Result r;
  r.loss = (*ex)->Data<float>(g.loss())[0];
  for (int i = 0; i < store.size(); ++i) r.grads.emplace_back(store.grad(i), store.grad(i) + store.info(i).numel);
  r.arena = (*ex)->plan().arena_bytes;
  return r;
}

Graph Built(bool defer, bool block_attention = false) {
  GptConfig cfg = kCfg;
  cfg.block_attention = block_attention;
  auto g = BuildGpt(cfg, kBatch);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g, {}, {}, defer).ok());
  return std::move(*g);
}

TEST_CASE("recompute: the plain backward's loss and gradients from less activation memory") {
  struct Case {
    int every, first;
    bool split;
  };
  const Case c = GENERATE(Case{1, 0, false}, Case{2, 0, false}, Case{1, 1, false}, Case{1, 0, true});
  INFO("every " << c.every << " first " << c.first << " split " << c.split);
  Graph plain = Built(c.split);
  const Result want = Run(plain, c.split);
  Graph g = Built(c.split);
  const std::vector<int> layers = RecomputeLayers(g, kCfg.n_layer, c.every, c.first);
  CHECK(layers == (c.first > 0 ? std::vector<int>{1} : c.every == 2 ? std::vector<int>{1, 3} : std::vector<int>{1, 2, 3, 4}));
  REQUIRE(AddRecompute(g, layers).ok());
  int clones = 0;
  for (const Node& n : g.nodes()) {
    if (n.recompute_of < 0) continue;
    ++clones;
    CHECK(n.backward);
    CHECK(NodePhase(g, n.id) == Phase::kRecompute);
    CHECK(std::find(layers.begin(), layers.end(), n.layer) != layers.end());
  }
  CHECK(clones > 0);
  const Result got = Run(g, c.split);
  CHECK(got.loss == want.loss);
  REQUIRE(got.grads.size() == want.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i) {
    INFO("parameter " << i);
    CHECK(got.grads[i] == want.grads[i]);
  }
  INFO("arena " << got.arena << " against " << want.arena);
  CHECK(got.arena < want.arena);
}

TEST_CASE("block attention op: the fused op's loss and gradients, alone and recomputed") {
  const bool recompute = GENERATE(false, true);
  INFO("recompute " << recompute);
  Graph fused = Built(false);
  const Result want = Run(fused, false);
  Graph g = Built(false, /*block_attention=*/true);
  int lse = 0, probs = 0;
  for (const Value& v : g.values()) {
    lse += v.name.find("attn.lse") != std::string::npos;
    probs += v.name.find("attn.probs") != std::string::npos;
  }
  CHECK(lse == kCfg.n_layer);
  CHECK(probs == 0);
  if (recompute) REQUIRE(AddRecompute(g, RecomputeLayers(g, kCfg.n_layer, 1)).ok());
  const Result got = Run(g, false);
  CHECK(got.loss == Approx(want.loss).epsilon(1e-6));
  for (size_t i = 0; i < want.grads.size(); ++i) {
    INFO("parameter " << i);
    double num = 0, den = 0;
    for (size_t j = 0; j < want.grads[i].size(); ++j) {
      const double d = got.grads[i][j] - want.grads[i][j];
      num += d * d;
      den += static_cast<double>(want.grads[i][j]) * want.grads[i][j];
    }
    CHECK(std::sqrt(num) <= 1e-5 * std::sqrt(den) + 1e-9);
  }
}

TEST_CASE("recompute: requests it cannot meet are named") {
  auto forward = BuildGpt(kCfg, kBatch);
  REQUIRE(forward.ok());
  CHECK(AddRecompute(*forward, {1}).message() == "recompute: the graph has no backward (run autodiff first)");
  Graph g = Built(false);
  CHECK(AddRecompute(g, {9}).message() == "recompute: layer 9 is not a layer of the graph (its layers: 0, 1, 2, 3, 4, 5)");
  REQUIRE(AddRecompute(g, {2}).ok());
  CHECK(AddRecompute(g, {3}).message() == "recompute: the graph already has recompute nodes");
}

}  // namespace
}  // namespace colossal::graph
