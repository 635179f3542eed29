// Graph tests: autodiff against finite differences, the CPU backend against the
// double-accumulating reference backend, gradient accumulation against one large
// batch, memory-plan safety, and graph-file round trips and errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/graph_file.h"
#include "graph/memory_plan.h"
#include "graph/op_registry.h"
#include "graph/schedule.h"
#include "graph/models/gpt.h"
#include "kernels/testing/kernel_testing.h"

namespace colossal::graph {
namespace {

const GptConfig kTiny{/*n_layer=*/2, /*n_head=*/2, /*d_model=*/8, /*seq_len=*/5, /*vocab=*/11};

struct Setup {
  Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<Executor> ex;
};

Setup Make(const GptConfig& cfg, int64_t batch, kernels::Backend backend, bool defer_weight_grads = false) {
  Setup s;
  auto g = BuildGpt(cfg, batch);
  REQUIRE(g.ok());
  s.graph = std::move(*g);
  REQUIRE(BuildBackward(s.graph, {}, {}, defer_weight_grads).ok());
  s.params = std::make_unique<memory::ParamStore>(ParamSpecs(s.graph));
  // Large random weights so that every path carries a visible gradient.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.4f);
  for (int i = 0; i < s.params->size(); ++i) {
    float* w = s.params->data(i);
    const bool ln_weight = s.params->info(i).name.find("ln_") != std::string::npos &&
                           s.params->info(i).name.find("weight") != std::string::npos;
    for (int64_t j = 0; j < s.params->info(i).numel; ++j) w[j] = (ln_weight ? 1.0f : 0.0f) + normal(rng);
  }
  auto ex = Executor::Create(&s.graph, s.params.get(), kernels::Stream{backend});
  REQUIRE(ex.ok());
  s.ex = std::move(*ex);
  FillPositions(s.ex->Data<int32_t>(s.graph.Find("positions")), batch, cfg.seq_len);
  return s;
}

// Rows [offset, offset + batch) of a fixed pool of random sequences drawn from `seed`.
void FillTokens(Setup& s, int64_t batch, int64_t seq, int64_t vocab, int64_t offset, uint32_t seed) {
  constexpr int64_t kPoolRows = 16;
  REQUIRE(offset + batch <= kPoolRows);
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(kPoolRows * seq), targets(kPoolRows * seq);
  for (auto& t : ids) t = static_cast<int32_t>(rng() % vocab);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % vocab);
  std::copy(ids.begin() + offset * seq, ids.begin() + (offset + batch) * seq,
            s.ex->Data<int32_t>(s.graph.Find("ids")));
  std::copy(targets.begin() + offset * seq, targets.begin() + (offset + batch) * seq,
            s.ex->Data<int32_t>(s.graph.Find("targets")));
}

float Loss(Setup& s) {
  s.ex->Forward();
  return s.ex->Data<float>(s.graph.loss())[0];
}

TEST_CASE("autodiff gradients of a GPT match central finite differences") {
  Setup s = Make(kTiny, 2, kernels::Backend::kRef);
  FillTokens(s, 2, kTiny.seq_len, kTiny.vocab, 0, 1);
  s.ex->Data<float>(s.graph.loss_seed())[0] = 1.0f;
  s.ex->Forward();
  s.ex->Backward(0);
  std::vector<std::vector<float>> grads;
  for (int i = 0; i < s.params->size(); ++i) {
    grads.emplace_back(s.params->grad(i), s.params->grad(i) + s.params->info(i).numel);
  }
  const float h = 1e-2f;
  int checked = 0;
  for (int i = 0; i < s.params->size(); ++i) {
    const memory::ParamInfo& info = s.params->info(i);
    for (int64_t j : {int64_t{0}, info.numel / 2, info.numel - 1}) {
      float* w = s.params->data(i) + j;
      const float saved = *w;
      *w = saved + h;
      const double up = Loss(s);
      *w = saved - h;
      const double down = Loss(s);
      *w = saved;
      const double numeric = (up - down) / (2.0 * h);
      const double analytic = grads[i][j];
      INFO(info.name << "[" << j << "]: analytic " << analytic << " numeric " << numeric);
      // Float storage between ops makes the difference quotient noisy at ~1e-5/h; the
      // O(h²) truncation term is ~1e-4 for these weights.
      REQUIRE(std::fabs(analytic - numeric) <= 2e-3 + 2e-2 * std::fabs(numeric));
      ++checked;
    }
  }
  REQUIRE(checked == 3 * s.params->size());
}

TEST_CASE("CPU backend matches the reference backend on loss and every gradient") {
  Setup ref = Make(kTiny, 3, kernels::Backend::kRef);
  Setup cpu = Make(kTiny, 3, kernels::Backend::kCpu);
  for (Setup* s : {&ref, &cpu}) {
    FillTokens(*s, 3, kTiny.seq_len, kTiny.vocab, 0, 2);
    s->ex->Data<float>(s->graph.loss_seed())[0] = 1.0f;
    s->ex->Forward();
    s->ex->Backward(0);
  }
  const double lr = ref.ex->Data<float>(ref.graph.loss())[0];
  const double lc = cpu.ex->Data<float>(cpu.graph.loss())[0];
  REQUIRE(std::fabs(lr - lc) <= 1e-5 * std::fabs(lr));
  for (int i = 0; i < ref.params->size(); ++i) {
    INFO(ref.params->info(i).name);
    auto r = kernels::testing::AllClose(cpu.params->grad(i), ref.params->grad(i),
                                        ref.params->info(i).numel, 1e-5, 1e-4);
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("two accumulated micro-batches give the gradient of one batch of both") {
  Setup big = Make(kTiny, 4, kernels::Backend::kCpu);
  Setup small = Make(kTiny, 2, kernels::Backend::kCpu);
  FillTokens(big, 4, kTiny.seq_len, kTiny.vocab, 0, 3);
  big.ex->Data<float>(big.graph.loss_seed())[0] = 1.0f;
  big.ex->Forward();
  big.ex->Backward(0);
  small.ex->Data<float>(small.graph.loss_seed())[0] = 0.5f;
  double loss = 0;
  for (int m = 0; m < 2; ++m) {
    FillTokens(small, 2, kTiny.seq_len, kTiny.vocab, 2 * m, 3);
    small.ex->Forward();
    small.ex->Backward(m);
    loss += 0.5 * small.ex->Data<float>(small.graph.loss())[0];
  }
  REQUIRE(std::fabs(loss - big.ex->Data<float>(big.graph.loss())[0]) < 1e-5);
  for (int i = 0; i < big.params->size(); ++i) {
    INFO(big.params->info(i).name);
    auto r = kernels::testing::AllClose(small.params->grad(i), big.params->grad(i),
                                        big.params->info(i).numel, 1e-6, 1e-4);
    INFO(r.message);
    REQUIRE(r.ok);
  }
  // A second step overwrites (micro-step 0) instead of accumulating onto stale gradients.
  for (int m = 0; m < 2; ++m) {
    FillTokens(small, 2, kTiny.seq_len, kTiny.vocab, 2 * m, 3);
    small.ex->Forward();
    small.ex->Backward(m);
  }
  for (int i = 0; i < big.params->size(); ++i) {
    auto r = kernels::testing::AllClose(small.params->grad(i), big.params->grad(i),
                                        big.params->info(i).numel, 1e-6, 1e-4);
    REQUIRE(r.ok);
  }
}

// Every backward-input node first, then every backward-weight node (each part keeping
// the default order): zero-bubble's split, taken blindly.
Schedule AllWeightsLast(const Graph& g) {
  Schedule s = DefaultSchedule(g);
  std::stable_partition(s.entries.begin() + s.num_forward, s.entries.end(),
                        [](const ScheduleEntry& e) { return e.phase != Phase::kBackwardWeight; });
  return s;
}

TEST_CASE("schedules: phases, validation, and a reordered backward computes the same") {
  Setup a = Make(kTiny, 2, kernels::Backend::kCpu);
  const Schedule deferred = SplitBackward(a.graph, DefaultSchedule(a.graph));
  int weights = 0, inputs = 0;
  for (const ScheduleEntry& e : deferred.entries) {
    weights += e.phase == Phase::kBackwardWeight;
    inputs += e.phase == Phase::kBackwardInput;
  }
  REQUIRE(weights > 0);
  REQUIRE(inputs > 0);
  REQUIRE(deferred.entries.back().phase == Phase::kBackwardWeight);
  const absl::Status valid = ValidateSchedule(a.graph, deferred);
  INFO(valid.message());
  REQUIRE(valid.ok());
  // Some weight gradient did move (the schedule differs from the default).
  const Schedule plain = DefaultSchedule(a.graph);
  bool moved = false;
  for (size_t t = 0; t < plain.entries.size(); ++t) moved |= plain.entries[t].node != deferred.entries[t].node;
  REQUIRE(moved);
  // Taken blindly, the split breaks a dependency: a weight gradient would read an
  // activation gradient after a later node accumulated into it.
  CHECK_THAT(std::string(ValidateSchedule(a.graph, AllWeightsLast(a.graph)).message()),
             Catch::Contains("run in the opposite order of their dependency"));

  // The same step under the reordered schedule: the W nodes keep their order among
  // themselves, so every gradient is bitwise the default schedule's.
  Setup b = Make(kTiny, 2, kernels::Backend::kCpu);
  auto ex = Executor::Create(&b.graph, b.params.get(), deferred);
  REQUIRE(ex.ok());
  b.ex = std::move(*ex);
  FillPositions(b.ex->Data<int32_t>(b.graph.Find("positions")), 2, kTiny.seq_len);
  for (Setup* s : {&a, &b}) {
    s->ex->Data<float>(s->graph.loss_seed())[0] = 1.0f;
    for (int m = 0; m < 2; ++m) {
      FillTokens(*s, 2, kTiny.seq_len, kTiny.vocab, 2 * m, 5);
      s->ex->Forward();
      s->ex->Backward(m);
    }
  }
  for (int i = 0; i < a.params->size(); ++i) {
    INFO(a.params->info(i).name);
    REQUIRE(std::memcmp(a.params->grad(i), b.params->grad(i),
                        a.params->info(i).numel * sizeof(float)) == 0);
  }

  // Bad schedules are named.
  Schedule twice = DefaultSchedule(a.graph);
  twice.entries.push_back(twice.entries.back());
  CHECK_THAT(std::string(ValidateSchedule(a.graph, twice).message()),
             Catch::Contains("runs a second time"));
  Schedule early = DefaultSchedule(a.graph);
  std::swap(early.entries[0], early.entries[2]);  // the add before the embeddings
  CHECK_THAT(std::string(ValidateSchedule(a.graph, early).message()),
             Catch::Contains("before any node writes it"));
  Schedule missing = DefaultSchedule(a.graph);
  missing.entries.pop_back();
  CHECK_THAT(std::string(ValidateSchedule(a.graph, missing).message()),
             Catch::Contains("is never run"));
  Schedule mixed = DefaultSchedule(a.graph);
  --mixed.num_forward;
  CHECK_THAT(std::string(ValidateSchedule(a.graph, mixed).message()),
             Catch::Contains("a forward node in the backward part"));
  CHECK(Executor::Create(&a.graph, a.params.get(), missing).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("split backward (zero-bubble B then W): every weight gradient deferred, same gradients") {
  Setup a = Make(kTiny, 2, kernels::Backend::kCpu);
  // The same model with deferral-safe autodiff: no gradient a weight-gradient node reads
  // is accumulated into in place later.
  Setup b = Make(kTiny, 2, kernels::Backend::kCpu, /*defer_weight_grads=*/true);
  // Default autodiff: only part of the weight gradients can move.
  const Schedule partial = SplitBackward(a.graph, DefaultSchedule(a.graph));
  const Schedule split = SplitBackward(b.graph, DefaultSchedule(b.graph));
  for (const Schedule* s : {&partial, &split}) {
    const absl::Status valid = ValidateSchedule(s == &split ? b.graph : a.graph, *s);
    INFO(valid.message());
    REQUIRE(valid.ok());
  }
  auto weight_nodes = [](const Graph& g, const Schedule& s, bool in_w_part) {
    int n = 0;
    for (size_t t = s.num_forward; t < s.entries.size(); ++t) {
      const bool w_part = static_cast<int>(t) >= s.num_forward + s.num_backward_input;
      if (w_part == in_w_part && NodePhase(g, s.entries[t].node) == Phase::kBackwardWeight) ++n;
    }
    return n;
  };
  CHECK(weight_nodes(a.graph, partial, false) > 0);  // some stay in B
  REQUIRE(weight_nodes(b.graph, split, false) == 0);   // all move
  REQUIRE(weight_nodes(b.graph, split, true) > 10);
  // Bad split points are named.
  Schedule wrong = split;
  wrong.num_backward_input = 0;
  CHECK_THAT(std::string(ValidateSchedule(b.graph, wrong).message()), Catch::Contains("weight-gradient part"));

  auto ex = Executor::Create(&b.graph, b.params.get(), split);
  REQUIRE(ex.ok());
  b.ex = std::move(*ex);
  FillPositions(b.ex->Data<int32_t>(b.graph.Find("positions")), 2, kTiny.seq_len);
  // Two micro-batches; b adds every parameter gradient into storage zeroed first and runs
  // each backward as B then W.
  b.ex->SetParamGrads(Executor::ParamGrads::kAlwaysAdd);
  std::fill(b.params->flat_grad(), b.params->flat_grad() + b.params->flat_numel(), 0.0f);
  a.ex->Data<float>(a.graph.loss_seed())[0] = 1.0f;
  b.ex->Data<float>(b.graph.loss_seed())[0] = 1.0f;
  for (int m = 0; m < 2; ++m) {
    FillTokens(a, 2, kTiny.seq_len, kTiny.vocab, 2 * m, 5);
    a.ex->Forward();
    a.ex->Backward(m);
  }
  std::vector<float> loss_b;
  for (int m = 0; m < 2; ++m) {
    FillTokens(b, 2, kTiny.seq_len, kTiny.vocab, 2 * m, 5);
    b.ex->Forward();
    loss_b.push_back(b.ex->Data<float>(b.graph.loss())[0]);
    b.ex->BackwardInput(m);
    b.ex->BackwardWeight(m);
  }
  REQUIRE(loss_b[1] == a.ex->Data<float>(a.graph.loss())[0]);
  for (int i = 0; i < a.params->size(); ++i) {
    INFO(a.params->info(i).name);
    auto r = kernels::testing::AllClose(b.params->grad(i), a.params->grad(i), a.params->info(i).numel, 1e-6, 1e-6);
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("overlapped communication: posted early, waited late, validated, planned apart") {
  GptTensorParallel tp;
  tp.size = 2;
  tp.sequence_parallel = GENERATE(false, true);
  INFO((tp.sequence_parallel ? "1d + sequence parallel" : "1d"));
  auto g = BuildGpt({2, 4, 32, 16, 64}, 2, tp);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  const Schedule s = OverlapCommunication(*g, DefaultSchedule(*g));
  const absl::Status valid = ValidateSchedule(*g, s);
  INFO(valid.message());
  REQUIRE(valid.ok());
  // Every input gradient's all-reduce (sp: its reduce-scatter) of the column-parallel
  // linears runs beside the weight gradient of the same linear.
  int waits = 0, beside_weight_grad = 0;
  std::vector<int> pos(g->nodes().size(), -1);
  for (size_t t = 0; t < s.entries.size(); ++t) {
    if (s.entries[t].phase != Phase::kCommWait) pos[s.entries[t].node] = static_cast<int>(t);
  }
  auto plan = PlanMemory(*g, s);
  REQUIRE(plan.ok());
  for (size_t t = 0; t < s.entries.size(); ++t) {
    const ScheduleEntry& e = s.entries[t];
    if (e.phase != Phase::kCommWait) continue;
    ++waits;
    const Node& node = g->node(e.node);
    REQUIRE(pos[e.node] + 1 < static_cast<int>(t));
    bool weight_grad = false;
    for (int u = pos[e.node] + 1; u < static_cast<int>(t); ++u) {
      const Node& other = g->node(s.entries[u].node);
      weight_grad |= other.op == "matmul_grad_weight";
      // Nothing written in between shares bytes with the collective's values.
      for (int w : other.outputs) {
        if (plan->offset[w] < 0) continue;
        for (const std::vector<int>* mine : {&node.inputs, &node.outputs}) {
          for (int v : *mine) {
            if (plan->offset[v] < 0) continue;
            INFO(node.op << " " << g->value(v).name << " and " << other.op << " " << g->value(w).name);
            REQUIRE_FALSE((plan->offset[v] < plan->offset[w] + g->value(w).bytes() &&
                           plan->offset[w] < plan->offset[v] + g->value(v).bytes()));
          }
        }
      }
    }
    beside_weight_grad += weight_grad;
  }
  // Per layer: the input gradients of c_attn and c_fc.
  REQUIRE(beside_weight_grad >= 2 * 2);
  REQUIRE(waits >= beside_weight_grad);

  // A reader moved before the wait, and a wait before its post, are named.
  Schedule early_reader = s;
  for (size_t t = 0; t < early_reader.entries.size(); ++t) {
    if (early_reader.entries[t].phase != Phase::kCommWait) continue;
    std::swap(early_reader.entries[t], early_reader.entries[t + 1]);  // its first reader
    break;
  }
  CHECK_THAT(std::string(ValidateSchedule(*g, early_reader).message()),
             Catch::Contains("before its wait"));
  Schedule wait_first = s;
  for (size_t t = 0; t < wait_first.entries.size(); ++t) {
    if (wait_first.entries[t].phase != Phase::kCommWait) continue;
    const int node = wait_first.entries[t].node;
    std::swap(wait_first.entries[t], wait_first.entries[pos[node]]);
    break;
  }
  CHECK_THAT(std::string(ValidateSchedule(*g, wait_first).message()), Catch::Contains("before its start"));
}

TEST_CASE("the decode graph (KV cache in kState values) gives the training forward's logits") {
  const int64_t B = 2, T = kTiny.seq_len, V = kTiny.vocab;
  Setup train = Make(kTiny, B, kernels::Backend::kCpu);
  FillTokens(train, B, T, V, 0, 3);
  train.ex->Forward();
  const float* logits = train.ex->Data<float>(train.graph.Find("logits"));
  const int32_t* ids = train.ex->Data<int32_t>(train.graph.Find("ids"));

  auto built = BuildGpt(kTiny, B, {}, GptPass::kDecode);
  REQUIRE(built.ok());
  const Graph& dec = *built;
  // The same parameters in the same order; no targets, no loss; two caches per layer.
  REQUIRE(dec.params().size() == train.graph.params().size());
  for (size_t i = 0; i < dec.params().size(); ++i) {
    REQUIRE(dec.value(dec.params()[i]).name == train.graph.value(train.graph.params()[i]).name);
  }
  REQUIRE(dec.Find("targets") < 0);
  REQUIRE(dec.loss() < 0);
  REQUIRE(dec.states().size() == 2 * static_cast<size_t>(kTiny.n_layer));
  auto ex = Executor::Create(&dec, train.params.get(), kernels::Stream{kernels::Backend::kCpu});
  REQUIRE(ex.ok());
  // States live outside the arena, so they survive every run.
  for (int v : dec.states()) REQUIRE((*ex)->plan().offset[v] < 0);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) {
      (*ex)->Data<int32_t>(dec.Find("ids"))[b] = ids[b * T + t];
      (*ex)->Data<int32_t>(dec.Find("positions"))[b] = static_cast<int32_t>(t);
    }
    (*ex)->Forward();
    const float* step = (*ex)->Data<float>(dec.Find("logits"));
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> got(step + b * V, step + (b + 1) * V);
      std::vector<float> want(logits + (b * T + t) * V, logits + (b * T + t + 1) * V);
      CAPTURE(t, b);
      auto r = kernels::testing::AllClose(got, want, 1e-5, 1e-4);
      INFO(r.message);
      REQUIRE(r.ok);
    }
  }
  REQUIRE(!BuildGpt(kTiny, 1, GptTensorParallel{.size = 2}, GptPass::kDecode).ok());
}

TEST_CASE("memory plan never overlaps two values that are live at once") {
  auto g = BuildGpt({3, 4, 32, 16, 50}, 2);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  const bool deferred = GENERATE(false, true);
  INFO((deferred ? "weights-deferred schedule" : "default schedule"));
  const Schedule schedule = deferred ? SplitBackward(*g, DefaultSchedule(*g)) : DefaultSchedule(*g);
  auto plan = PlanMemory(*g, schedule);
  REQUIRE(plan.ok());
  // Lifetimes recomputed here over schedule positions.
  const int n_nodes = static_cast<int>(schedule.entries.size());
  const int n_values = static_cast<int>(g->values().size());
  std::vector<int> first(n_values, -1), last(n_values, -1);
  for (int n = 0; n < n_nodes; ++n) {
    const Node& node = g->node(schedule.entries[n].node);
    for (int v : node.inputs) last[v] = std::max(last[v], n);
    for (int v : node.outputs) {
      if (first[v] < 0) first[v] = n;
      last[v] = std::max(last[v], n);
    }
  }
  for (int v : g->inputs()) first[v] = 0, last[v] = n_nodes;
  for (int v : g->outputs()) last[v] = n_nodes;
  int shared_pairs = 0;
  for (int a = 0; a < n_values; ++a) {
    if (plan->offset[a] < 0) continue;
    for (int b = a + 1; b < n_values; ++b) {
      if (plan->offset[b] < 0) continue;
      const bool bytes_overlap = plan->offset[a] < plan->offset[b] + g->value(b).bytes() &&
                                 plan->offset[b] < plan->offset[a] + g->value(a).bytes();
      if (!bytes_overlap) continue;
      if (plan->storage[a] == plan->storage[b]) {
        ++shared_pairs;  // in place: allowed by the op, checked by the numeric tests
        continue;
      }
      const bool time_overlap = first[a] <= last[b] && first[b] <= last[a];
      INFO(g->value(a).name << " and " << g->value(b).name);
      REQUIRE_FALSE(time_overlap);
    }
  }
  REQUIRE(shared_pairs > 0);
  // The arena can be no smaller than the bytes live at the busiest node; the greedy
  // placement should stay close to that bound and well below no reuse at all.
  int64_t peak = 0;
  for (int n = 0; n <= n_nodes; ++n) {
    std::map<int, int64_t> live;  // storage root -> bytes
    for (int v = 0; v < n_values; ++v) {
      if (plan->offset[v] >= 0 && first[v] <= n && n <= last[v]) {
        live[plan->storage[v]] = std::max(live[plan->storage[v]], g->value(v).bytes());
      }
    }
    int64_t bytes = 0;
    for (auto& [root, b] : live) bytes += b;
    peak = std::max(peak, bytes);
  }
  INFO("arena " << plan->arena_bytes << ", peak live " << peak << ", no reuse "
                << plan->unshared_bytes);
  REQUIRE(plan->arena_bytes >= peak);
  REQUIRE(plan->arena_bytes <= peak * 5 / 4);
  REQUIRE(plan->arena_bytes < plan->unshared_bytes * 3 / 5);
}

TEST_CASE("a node's scratch lives at its position alone, apart from every live value") {
  // A 3D rank's graph: its linear_3d nodes gather their blocks into scratch.
  GptTensorParallel tp;
  tp.size = 8, tp.three_d = true;
  auto g = BuildGpt({2, 4, 32, 16, 64}, 4, tp);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  const Schedule schedule = DefaultSchedule(*g);
  auto plan = PlanMemory(*g, schedule);
  REQUIRE(plan.ok());
  const int n_nodes = static_cast<int>(schedule.entries.size());
  const int n_values = static_cast<int>(g->values().size());
  std::vector<int> first(n_values, -1), last(n_values, -1);
  for (int n = 0; n < n_nodes; ++n) {
    const Node& node = g->node(schedule.entries[n].node);
    for (int v : node.inputs) last[v] = std::max(last[v], n);
    for (int v : node.outputs) {
      if (first[v] < 0) first[v] = n;
      last[v] = std::max(last[v], n);
    }
  }
  for (int v : g->inputs()) first[v] = 0, last[v] = n_nodes;
  for (int v : g->outputs()) last[v] = n_nodes;
  int with_scratch = 0, sharing = 0;
  for (int n = 0; n < n_nodes; ++n) {
    const int id = schedule.entries[n].node;
    const Node& node = g->node(id);
    const OpDef* def = FindOp(node.op);
    if (!def->scratch) {
      REQUIRE(plan->scratch_offset[id] < 0);
      continue;
    }
    std::vector<TensorType> in, out;
    for (int v : node.inputs) in.push_back({g->value(v).shape, g->value(v).dtype});
    for (int v : node.outputs) out.push_back({g->value(v).shape, g->value(v).dtype});
    const int64_t bytes = def->scratch(in, out, node.attrs);
    const int64_t start = plan->scratch_offset[id];
    REQUIRE(start >= 0);
    if (node.op == "linear_3d" || node.op == "linear_3d_backward") {
      // x gathered q-fold, w q-fold, the product's q·rows: more than the node's inputs.
      ++with_scratch;
      int64_t inputs = 0;
      for (int v : node.inputs) inputs += g->value(v).bytes();
      REQUIRE(bytes > inputs);
    }
    REQUIRE(start + bytes <= plan->arena_bytes);
    bool shares = false;
    for (int v = 0; v < n_values; ++v) {
      if (plan->offset[v] < 0) continue;
      const bool overlap = plan->offset[v] < start + bytes && start < plan->offset[v] + g->value(v).bytes();
      if (!overlap) continue;
      INFO(node.op << " at " << n << " and " << g->value(v).name);
      REQUIRE_FALSE((first[v] <= n && n <= last[v]));
      shares = true;
    }
    sharing += shares ? 1 : 0;
  }
  // 2 layers × 4 linears + the head, forward and backward.
  REQUIRE(with_scratch == 18);
  REQUIRE(sharing > 0);
}

TEST_CASE("a GPT exported to a graph file loads back and computes the same loss") {
  auto forward = BuildGpt(kTiny, 2);
  REQUIRE(forward.ok());
  auto text = ExportGraphText(*forward, "tiny");
  REQUIRE(text.ok());
  auto loaded = ParseGraphText(*text, "tiny.graph", 2);
  INFO(loaded.status().message());
  REQUIRE(loaded.ok());
  REQUIRE(loaded->nodes().size() == forward->nodes().size());
  REQUIRE(loaded->params().size() == forward->params().size());
  // The layer marks travel with the nodes (pipeline stages and recompute cut by them).
  for (size_t i = 0; i < forward->nodes().size(); ++i) {
    CHECK(loaded->node(static_cast<int>(i)).layer == forward->node(static_cast<int>(i)).layer);
  }
  CHECK(loaded->node(0).layer == 0);
  Setup a = Make(kTiny, 2, kernels::Backend::kCpu);
  Setup b;
  b.graph = std::move(*loaded);
  REQUIRE(BuildBackward(b.graph).ok());
  b.params = std::make_unique<memory::ParamStore>(ParamSpecs(b.graph));
  std::copy(a.params->flat_data(), a.params->flat_data() + a.params->flat_numel(),
            b.params->flat_data());
  auto ex = Executor::Create(&b.graph, b.params.get());
  REQUIRE(ex.ok());
  b.ex = std::move(*ex);
  FillPositions(b.ex->Data<int32_t>(b.graph.Find("positions")), 2, kTiny.seq_len);
  FillTokens(a, 2, kTiny.seq_len, kTiny.vocab, 0, 4);
  FillTokens(b, 2, kTiny.seq_len, kTiny.vocab, 0, 4);
  REQUIRE(Loss(a) == Loss(b));
}

TEST_CASE("bad graph files are rejected with the location") {
  const std::string good_head =
      "name: \"g\"\n"
      "dims { key: \"seq\" value: 4 }\n"
      "inputs { name: \"ids\" shape: [\"batch\", \"seq\"] dtype: I32 }\n"
      "params { name: \"w\" shape: [\"10\", \"8\"] init { normal_std: 0.02 } }\n";
  auto parse = [&](const std::string& tail) { return ParseGraphText(good_head + tail, "m.graph", 2); };

  auto syntax = ParseGraphText("name: \"g\"\nnodes { op: }\n", "m.graph", 2);
  REQUIRE(absl::IsInvalidArgument(syntax.status()));
  REQUIRE_THAT(std::string(syntax.status().message()), Catch::Contains("m.graph:2:"));

  auto unknown = parse("nodes { op: \"conv9d\" inputs: \"ids\" outputs: \"x\" }\nloss: \"x\"\n");
  REQUIRE_THAT(std::string(unknown.status().message()),
               Catch::Contains("m.graph:5:1: node 0 (conv9d): unknown op"));

  auto undefined = parse("nodes { op: \"embedding\" inputs: [\"idz\", \"w\"] outputs: \"x\" }\n");
  REQUIRE_THAT(std::string(undefined.status().message()), Catch::Contains("input 'idz'"));

  auto shapes = parse(
      "nodes { op: \"embedding\" inputs: [\"ids\", \"w\"] outputs: \"x\" }\n"
      "nodes { op: \"matmul\" inputs: [\"x\", \"w\"] outputs: \"y\" }\n");
  REQUIRE_THAT(std::string(shapes.status().message()),
               Catch::Contains("m.graph:6:1: node 1 (matmul)") && Catch::Contains("do not chain"));

  auto no_loss = parse("nodes { op: \"embedding\" inputs: [\"ids\", \"w\"] outputs: \"x\" }\n");
  REQUIRE_THAT(std::string(no_loss.status().message()), Catch::Contains("loss"));

  auto bad_dim = ParseGraphText("inputs { name: \"ids\" shape: [\"batch\", \"sequence\"] dtype: I32 }\n",
                                "m.graph", 2);
  REQUIRE_THAT(std::string(bad_dim.status().message()),
               Catch::Contains("m.graph:1:1") && Catch::Contains("unknown dimension 'sequence'"));
}

}  // namespace
}  // namespace colossal::graph
