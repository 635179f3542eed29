// The interpreter against one executor over the whole model: every schedule at 2 and 4
// stages (threads over LocalGroup), same per-micro-batch losses and the same parameter
// gradients (wte summed between the ranks holding it by SumSharedGrads); slots within the schedule's
// simulated peak; validation forward; and a bad split named.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/layout.h"
#include "graph/models/gpt.h"
#include "kernels/testing/kernel_testing.h"
#include "parallel/comm/local/local_communicator.h"
#include "parallel/pipeline/runner.h"

namespace colossal::parallel::pipeline {
namespace {

const graph::GptConfig kCfg{4, 2, 16, 8, 64};  // 4 layers, 2 heads, d 16, seq 8, vocab 64
constexpr int64_t kBatch = 2;

graph::Graph Forward() {
  auto g = graph::BuildGpt(kCfg, kBatch);
  REQUIRE(g.ok());
  return std::move(*g);
}

// Deterministic weights (large enough that every path carries gradient) and tokens.
float Weight(const std::string& name, int64_t i) {
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(name) + i));
  std::normal_distribution<float> normal(0.0f, 0.3f);
  const bool ln_weight = name.find("ln_") != std::string::npos && name.find("weight") != std::string::npos;
  return (ln_weight ? 1.0f : 0.0f) + normal(rng);
}
void InitStore(memory::ParamStore& store) {
  for (int i = 0; i < store.size(); ++i) {
    for (int64_t j = 0; j < store.info(i).numel; ++j) store.data(i)[j] = Weight(store.info(i).name, j);
  }
}
std::unique_ptr<memory::ParamStore> StoreFor(const graph::Graph& g) {
  auto store = std::make_unique<memory::ParamStore>(graph::ParamSpecs(g));
  InitStore(*store);
  return store;
}
void FillTokens(const graph::Graph& g, graph::Executor& ex, int m) {
  std::mt19937 rng(100 + m);
  const int ids = g.Find("ids"), targets = g.Find("targets");
  std::vector<int32_t> a(kBatch * kCfg.seq_len), b(a.size());
  for (auto& t : a) t = static_cast<int32_t>(rng() % kCfg.vocab);
  for (auto& t : b) t = static_cast<int32_t>(rng() % kCfg.vocab);
  if (ids >= 0) std::copy(a.begin(), a.end(), ex.Data<int32_t>(ids));
  if (targets >= 0) std::copy(b.begin(), b.end(), ex.Data<int32_t>(targets));
}

struct Reference {
  std::vector<float> losses;
  std::map<std::string, std::vector<float>> grads;
};

Reference RunWhole(int microbatches) {
  graph::Graph g = Forward();
  REQUIRE(graph::BuildBackward(g).ok());
  auto store = StoreFor(g);
  auto ex = graph::Executor::Create(&g, store.get());
  REQUIRE(ex.ok());
  graph::FillPositions((*ex)->Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
  (*ex)->Data<float>(g.loss_seed())[0] = 1.0f / microbatches;
  Reference ref;
  for (int m = 0; m < microbatches; ++m) {
    FillTokens(g, **ex, m);
    (*ex)->Forward();
    ref.losses.push_back((*ex)->Data<float>(g.loss())[0]);
    (*ex)->Backward(m);
  }
  for (int i = 0; i < store->size(); ++i) {
    ref.grads[store->info(i).name].assign(store->grad(i), store->grad(i) + store->info(i).numel);
  }
  return ref;
}

struct RankResult {
  absl::Status status;
  std::map<int, float> losses;  // by micro-batch (ranks holding the last stage)
  std::map<std::string, std::vector<float>> grads;
  std::vector<int> slots;
  int timed = 0;
  float eval_loss = -1;
};

std::vector<RankResult> RunPipeline(const PipelineSchedule& schedule) {
  auto group = LocalGroup::Create(schedule.stages, std::chrono::seconds(20));
  std::vector<RankResult> out(schedule.stages);
  std::vector<std::thread> threads;
  for (int r = 0; r < schedule.stages; ++r) {
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      RankResult& res = out[r];
      auto comm = group->Member(r);
      const graph::Graph whole = Forward();
      auto chunks = BuildChunks(whole, schedule, r);
      if (!chunks.ok()) {
        res.status = chunks.status();
        return;
      }
      auto store = StoreFor(*(*chunks)[0].graph);
      const int M = schedule.microbatches;
      std::vector<const graph::Graph*> graphs;
      for (const Chunk& c : *chunks) graphs.push_back(c.graph.get());
      auto runner = Runner::Create(schedule, r, std::move(*chunks), store.get(), comm.get(),
                                   [&](int c, graph::Executor& ex) {
                                     const graph::Graph& g = *graphs[c];
                                     if (g.Find("positions") >= 0) {
                                       graph::FillPositions(ex.Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
                                     }
                                     if (g.loss_seed() >= 0) ex.Data<float>(g.loss_seed())[0] = 1.0f / M;
                                     return absl::OkStatus();
                                   });
      if (!runner.ok()) {
        res.status = runner.status();
        return;
      }
      auto feed = [&](int c, int m, graph::Executor& ex) { FillTokens(*graphs[c], ex, m); };
      // Two steps: the second reuses the slots and must give the same gradients.
      for (int step = 0; step < 2 && res.status.ok(); ++step) {
        res.status = (*runner)->Step(feed, [&](int m, graph::Executor& ex) {
          res.losses[m] = ex.Data<float>(graphs[0]->loss() >= 0 ? graphs[0]->loss() : graphs.back()->loss())[0];
        });
      }
      if (!res.status.ok()) return;
      auto shared = SharedParams(whole, schedule);
      res.status = shared.ok() ? (*runner)->SumSharedGrads(*shared) : shared.status();
      if (!res.status.ok()) return;
      for (int i = 0; i < store->size(); ++i) {
        res.grads[store->info(i).name].assign(store->grad(i), store->grad(i) + store->info(i).numel);
      }
      for (int c = 0; c < (*runner)->num_chunks(); ++c) res.slots.push_back((*runner)->slots(c));
      res.timed = static_cast<int>((*runner)->last_timeline().size());
      // Validation forward of micro-batch 3's tokens.
      res.status = (*runner)->Forward([&](int c, int, graph::Executor& ex) { FillTokens(*graphs[c], ex, 3); },
                                      [&](int, graph::Executor& ex) {
                                        for (const graph::Graph* g : graphs) {
                                          if (g->loss() >= 0) res.eval_loss = ex.Data<float>(g->loss())[0];
                                        }
                                      });
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

TEST_CASE("pipeline runner: every schedule gives the whole model's losses and gradients") {
  struct Case {
    ScheduleKind kind;
    int stages, chunks;
  };
  const Case c = GENERATE(Case{ScheduleKind::kGpipe, 2, 1}, Case{ScheduleKind::k1f1b, 2, 1},
                          Case{ScheduleKind::kInterleaved, 2, 2}, Case{ScheduleKind::kZbH1, 2, 1},
                          Case{ScheduleKind::kZbv, 2, 2}, Case{ScheduleKind::k1f1b, 4, 1},
                          Case{ScheduleKind::kZbH1, 4, 1}, Case{ScheduleKind::kZbH1, 3, 1},
                          Case{ScheduleKind::kGpipe, 4, 1});
  const int M = 4;
  INFO(std::string(ScheduleName(c.kind)) << " P=" << c.stages << " v=" << c.chunks);
  auto schedule = MakeSchedule(c.kind, c.stages, M, c.chunks);
  REQUIRE(schedule.ok());
  auto timeline = Simulate(*schedule);
  REQUIRE(timeline.ok());
  const Reference ref = RunWhole(M);
  const std::vector<RankResult> ranks = RunPipeline(*schedule);
  std::map<std::string, std::vector<float>> summed;
  std::map<int, float> losses;
  for (int r = 0; r < c.stages; ++r) {
    INFO("rank " << r);
    REQUIRE(ranks[r].status.ok());
    for (const auto& [m, loss] : ranks[r].losses) losses[m] = loss;
    // A parameter on several ranks (wte) has the same summed gradient on each.
    for (const auto& [name, g] : ranks[r].grads) {
      auto [it, fresh] = summed.emplace(name, g);
      if (!fresh) CHECK(it->second == g);
    }
    // Activations held per chunk: its list's peak (schedule_test checks it), plus one for
    // the receive posted one action ahead.
    const std::vector<int> peak = PeakHeldPerChunk(*schedule, r);
    for (int k = 0; k < c.chunks; ++k) CHECK(ranks[r].slots[k] <= peak[k] + 1);
    CHECK(ranks[r].timed == static_cast<int>(timeline->ranks[r].size()));
  }
  REQUIRE(losses.size() == static_cast<size_t>(M));
  for (int m = 0; m < M; ++m) CHECK(losses[m] == Approx(ref.losses[m]).epsilon(1e-6));
  REQUIRE(summed.size() == ref.grads.size());
  for (const auto& [name, g] : ref.grads) {
    INFO(name);
    auto r = kernels::testing::AllClose(summed[name].data(), g.data(), static_cast<int64_t>(g.size()), 1e-6, 1e-4);
    INFO(r.message);
    CHECK(r.ok);
  }
  // Validation: the last stage's loss of micro-batch 3's tokens.
  bool seen = false;
  for (const RankResult& r : ranks) {
    if (r.eval_loss >= 0) {
      CHECK(r.eval_loss == Approx(ref.losses[3]).epsilon(1e-6));
      seen = true;
    }
  }
  CHECK(seen);
}

// Pipeline × tensor parallelism (1d, 2 ranks per stage): world rank p·2 + t; the slot
// executors of a stage share its tensor group. Every rank's parameter parts start as the
// whole model's elements (through their layouts) and its gradient parts must be the
// whole model's.
TEST_CASE("pipeline runner with tensor parallelism: the whole model's losses and gradient parts") {
  const ScheduleKind kind = GENERATE(ScheduleKind::k1f1b, ScheduleKind::kZbv);
  const int P = 2, T = 2, M = 4, chunks = kind == ScheduleKind::kZbv ? 2 : 1;
  INFO(std::string(ScheduleName(kind)));
  auto schedule = MakeSchedule(kind, P, M, chunks);
  REQUIRE(schedule.ok());
  const Reference ref = RunWhole(M);
  auto world = LocalGroup::Create(P * T, std::chrono::seconds(20));
  std::vector<absl::Status> status(P * T);
  std::vector<std::map<int, float>> losses(P * T);
  std::vector<int> mismatches(P * T, 0), compared(P * T, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < P * T; ++w) {
    threads.emplace_back([&, w] {
      omp_set_num_threads(1);
      const int p = w / T, t = w % T;
      auto comm = world->Member(w);
      auto pipe = comm->Split({t, T + t});
      auto tensor = comm->Split({p * T, p * T + 1});
      if (!pipe.ok() || !tensor.ok()) return void(status[w] = absl::InternalError("split"));
      graph::GptTensorParallel tp;
      tp.size = T;
      tp.rank = t;
      auto whole = graph::BuildGpt(kCfg, kBatch, tp);
      if (!whole.ok()) return void(status[w] = whole.status());
      auto chunked = BuildChunks(*whole, *schedule, p);
      if (!chunked.ok()) return void(status[w] = chunked.status());
      std::vector<const graph::Graph*> graphs;
      for (const Chunk& c : *chunked) graphs.push_back(c.graph.get());
      const graph::Graph& g0 = *graphs[0];
      memory::ParamStore store(graph::ParamSpecs(g0));
      auto runs = [&](int i) {
        const graph::Value& v = g0.value(g0.params()[i]);
        return graph::GlobalRuns(v.shape, v.layout, 0, store.info(i).numel);
      };
      for (int i = 0; i < store.size(); ++i) {
        for (const graph::ElementRun& r : runs(i)) {
          for (int64_t k = 0; k < r.count; ++k) store.data(i)[r.local + k] = Weight(store.info(i).name, r.global + k);
        }
      }
      auto runner = Runner::Create(*schedule, p, std::move(*chunked), &store, pipe->get(),
                                   [&](int c, graph::Executor& ex) {
                                     const graph::Graph& g = *graphs[c];
                                     ex.SetGroup("tensor", tensor->get());
                                     if (g.Find("positions") >= 0) {
                                       graph::FillPositions(ex.Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
                                     }
                                     if (g.loss_seed() >= 0) ex.Data<float>(g.loss_seed())[0] = 1.0f / M;
                                     return absl::OkStatus();
                                   });
      if (!runner.ok()) return void(status[w] = runner.status());
      status[w] = (*runner)->Step([&](int c, int m, graph::Executor& ex) { FillTokens(*graphs[c], ex, m); },
                                  [&](int m, graph::Executor& ex) {
                                    for (const graph::Graph* g : graphs) {
                                      if (g->loss() >= 0) losses[w][m] = ex.Data<float>(g->loss())[0];
                                    }
                                  });
      if (!status[w].ok()) return;
      for (int i = 0; i < store.size(); ++i) {
        const std::vector<float>& want = ref.grads.at(store.info(i).name);
        // wte: this stage's share (the other end adds its own); checked summed below.
        if (store.info(i).name == "wte.weight") continue;
        for (const graph::ElementRun& r : runs(i)) {
          for (int64_t k = 0; k < r.count; ++k) {
            ++compared[w];
            const float got = store.grad(i)[r.local + k], expect = want[r.global + k];
            if (std::abs(got - expect) > 1e-6 + 1e-4 * std::abs(expect)) ++mismatches[w];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  int holders = 0;
  for (int w = 0; w < P * T; ++w) {
    INFO("world rank " << w << ": " << status[w].message());
    REQUIRE(status[w].ok());
    CHECK(compared[w] > 0);
    CHECK(mismatches[w] == 0);
    if (!losses[w].empty()) {
      ++holders;
      REQUIRE(losses[w].size() == static_cast<size_t>(M));
      for (int m = 0; m < M; ++m) CHECK(losses[w][m] == Approx(ref.losses[m]).epsilon(1e-5));
    }
  }
  CHECK(holders == T);  // both tensor ranks of the last stage
}

TEST_CASE("measured bubble: idle share of the ranks' span") {
  // Rank 0 busy [0, 10) and [20, 30), rank 1 busy [10, 30): 40 of 60 rank-units busy.
  std::vector<std::vector<TimedAction>> ranks(2);
  ranks[0] = {{Action{}, 0, 10}, {Action{}, 20, 30}};
  ranks[1] = {{Action{}, 10, 30}};
  CHECK(MeasuredBubble(ranks) == Approx(1.0 / 3.0));
  CHECK(MeasuredBubble({}) == 0);
}

TEST_CASE("pipeline chunks: more virtual stages than layers is named") {
  auto schedule = MakeSchedule(ScheduleKind::kInterleaved, 4, 4, 2);
  REQUIRE(schedule.ok());
  const graph::Graph whole = Forward();
  auto chunks = BuildChunks(whole, *schedule, 0);
  REQUIRE_FALSE(chunks.ok());
  CHECK_THAT(std::string(chunks.status().message()), Catch::Contains("every stage needs at least one layer"));
}

}  // namespace
}  // namespace colossal::parallel::pipeline
