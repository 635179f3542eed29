// Pipeline schedules measured: for each schedule, stages and micro-batch count, one rank
// per thread (one compute thread each, over LocalGroup), the step time, the bubble
// measured from the ranks' timed actions beside the textbook (theoretical) one, and the
// activation bytes each rank's slots hold. A GPT of 8 layers, d 128, seq 64, vocab 512,
// micro-batch 4; one warm-up step, then the mean of `--steps` (default 3).
// Stages beyond the machine's cores oversubscribe it and are marked so.
// --replay adds, and --replay-only prints alone, every schedule replayed (Simulate) with
// each virtual stage's F, B and W times measured one chunk at a time on one thread: the
// bubble of P uncontended devices, for stage counts this machine cannot run at once.
//   bazel run -c opt //tools/bench/pipeline:pipeline_bench -- [--steps N] [--stages 2,4]
//       [--replay | --replay-only]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "graph/executor.h"
#include "graph/models/gpt.h"
#include "graph/schedule.h"
#include "parallel/comm/local/local_communicator.h"
#include "parallel/pipeline/runner.h"
#include "parallel/pipeline/schedule.h"

namespace colossal::parallel::pipeline {
namespace {

const graph::GptConfig kCfg{8, 4, 128, 64, 512};
constexpr int64_t kBatch = 4;

struct Result {
  double step_ms = 0, bubble = 0;
  std::vector<int64_t> arena_bytes;
  bool ok = true;
  std::string error;
};

Result Measure(const PipelineSchedule& schedule, int steps) {
  const int P = schedule.stages;
  auto group = LocalGroup::Create(P, std::chrono::seconds(120));
  std::vector<std::vector<TimedAction>> timelines(P);
  std::vector<double> step_ms(P, 0);
  std::vector<int64_t> arena(P, 0);
  std::vector<std::string> errors(P);
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r) {
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      auto comm = group->Member(r);
      auto whole = graph::BuildGpt(kCfg, kBatch);
      if (!whole.ok()) return void(errors[r] = std::string(whole.status().message()));
      auto chunks = BuildChunks(*whole, schedule, r);
      if (!chunks.ok()) return void(errors[r] = std::string(chunks.status().message()));
      std::vector<const graph::Graph*> graphs;
      for (const Chunk& c : *chunks) graphs.push_back(c.graph.get());
      memory::ParamStore store(graph::ParamSpecs(*graphs[0]));
      std::mt19937 rng(1);
      std::normal_distribution<float> normal(0.0f, 0.02f);
      for (int64_t i = 0; i < store.flat_numel(); ++i) store.flat_data()[i] = normal(rng);
      const int M = schedule.microbatches;
      auto runner = Runner::Create(schedule, r, std::move(*chunks), &store, comm.get(), [&](int c, graph::Executor& ex) {
        const graph::Graph& g = *graphs[c];
        if (g.Find("positions") >= 0) graph::FillPositions(ex.Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
        if (g.loss_seed() >= 0) ex.Data<float>(g.loss_seed())[0] = 1.0f / M;
        return absl::OkStatus();
      });
      if (!runner.ok()) return void(errors[r] = std::string(runner.status().message()));
      auto feed = [&](int c, int m, graph::Executor& ex) {
        const graph::Graph& g = *graphs[c];
        for (const char* name : {"ids", "targets"}) {
          const int v = g.Find(name);
          if (v < 0) continue;
          int32_t* p = ex.Data<int32_t>(v);
          for (int64_t i = 0; i < kBatch * kCfg.seq_len; ++i) p[i] = static_cast<int32_t>((i * 7 + m * 13) % kCfg.vocab);
        }
      };
      double total = 0;
      for (int s = 0; s <= steps; ++s) {
        // Ranks start each step together, as after an optimizer step's collectives.
        if (!comm->Barrier()->Wait().ok()) return void(errors[r] = "barrier");
        const auto t0 = std::chrono::steady_clock::now();
        absl::Status st = (*runner)->Step(feed, nullptr);
        if (!st.ok()) return void(errors[r] = std::string(st.message()));
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (s > 0) total += ms;
      }
      step_ms[r] = total / steps;
      timelines[r] = (*runner)->last_timeline();
      arena[r] = (*runner)->arena_bytes();
    });
  }
  for (auto& t : threads) t.join();
  Result res;
  for (int r = 0; r < P; ++r) {
    if (!errors[r].empty()) {
      res.ok = false;
      res.error = "rank " + std::to_string(r) + ": " + errors[r];
      return res;
    }
  }
  res.step_ms = *std::max_element(step_ms.begin(), step_ms.end());
  res.bubble = MeasuredBubble(timelines);
  res.arena_bytes = arena;
  return res;
}

double MedianMs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Each virtual stage's forward, backward-input and backward-weight time (ms; the fused
// backward as B with W 0) under `schedule`'s graphs, measured one chunk at a time on one
// thread (median of `reps` after a warm-up): the costs of an uncontended device each.
std::vector<ActionCosts> MeasureCosts(const PipelineSchedule& schedule, int reps) {
  omp_set_num_threads(1);
  std::vector<ActionCosts> costs(schedule.virtual_stages());
  auto whole = graph::BuildGpt(kCfg, kBatch);
  if (!whole.ok()) return {};
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a) { return std::chrono::duration<double, std::milli>(Clock::now() - a).count(); };
  for (int r = 0; r < schedule.stages; ++r) {
    auto chunks = BuildChunks(*whole, schedule, r);
    if (!chunks.ok()) return {};
    for (Chunk& c : *chunks) {
      const graph::Graph& g = *c.graph;
      memory::ParamStore store(graph::ParamSpecs(g));
      std::mt19937 rng(1);
      std::normal_distribution<float> normal(0.0f, 0.02f);
      for (int64_t i = 0; i < store.flat_numel(); ++i) store.flat_data()[i] = normal(rng);
      auto ex = graph::Executor::Create(&g, &store, ChunkOrder(g, schedule));
      if (!ex.ok()) return {};
      for (int v : g.inputs()) {
        const graph::Value& val = g.value(v);
        if (val.dtype == graph::DType::kI32) {
          int32_t* p = (*ex)->Data<int32_t>(v);
          for (int64_t i = 0; i < val.numel(); ++i) p[i] = static_cast<int32_t>((i * 7) % kCfg.vocab);
        } else {
          float* p = (*ex)->Data<float>(v);
          for (int64_t i = 0; i < val.numel(); ++i) p[i] = normal(rng);
        }
      }
      if (g.Find("positions") >= 0) graph::FillPositions((*ex)->Data<int32_t>(g.Find("positions")), kBatch, kCfg.seq_len);
      if (g.loss_seed() >= 0) (*ex)->Data<float>(g.loss_seed())[0] = 1.0f;
      std::vector<double> f, b, w;
      for (int k = 0; k <= reps; ++k) {
        auto t = Clock::now();
        (*ex)->Forward();
        const double tf = ms(t);
        t = Clock::now();
        double tb = 0, tw = 0;
        if (schedule.split_backward()) {
          (*ex)->BackwardInput(k);
          tb = ms(t);
          t = Clock::now();
          (*ex)->BackwardWeight(k);
          tw = ms(t);
        } else {
          (*ex)->Backward(k);
          tb = ms(t);
        }
        if (k == 0) continue;
        f.push_back(tf);
        b.push_back(tb);
        w.push_back(tw);
      }
      costs[c.virtual_stage] = {MedianMs(f), MedianMs(b), MedianMs(w)};
    }
  }
  return costs;
}

}  // namespace
}  // namespace colossal::parallel::pipeline

int main(int argc, char** argv) {
  using namespace colossal::parallel::pipeline;
  int steps = 3;
  std::vector<int> stage_counts = {2, 4};
  bool replay = false, measure = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--replay") == 0) replay = true;
    if (std::strcmp(argv[i], "--replay-only") == 0) replay = true, measure = false;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--stages") == 0) {
      stage_counts.clear();
      for (const char* p = argv[i + 1]; *p;) {
        stage_counts.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    }
  }
  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("pipeline bench: GPT %lld layers, d %lld, seq %lld, vocab %lld, micro-batch %lld; "
              "one thread per stage; %u cores; mean of %d steps after one warm-up\n",
              static_cast<long long>(kCfg.n_layer), static_cast<long long>(kCfg.d_model),
              static_cast<long long>(kCfg.seq_len), static_cast<long long>(kCfg.vocab),
              static_cast<long long>(kBatch), cores, steps);
  std::printf("%-12s %6s %4s %8s %10s %10s %12s %8s  %s\n", "schedule", "stages", "M", "step ms", "bubble",
              "theory", "meas/theory", "ms/mb", "activation MiB per rank");
  for (int P : stage_counts) {
    if (!measure) break;
    for (int M : {4, 8, 16}) {
      for (ScheduleKind kind : {ScheduleKind::kGpipe, ScheduleKind::k1f1b, ScheduleKind::kInterleaved,
                                ScheduleKind::kZbH1, ScheduleKind::kZbv}) {
        const int chunks = kind == ScheduleKind::kInterleaved || kind == ScheduleKind::kZbv ? 2 : 1;
        auto schedule = MakeSchedule(kind, P, M, chunks);
        if (!schedule.ok()) continue;
        const Result r = Measure(*schedule, steps);
        if (!r.ok) {
          std::printf("%-12s %6d %4d  failed: %s\n", std::string(ScheduleName(kind)).c_str(), P, M, r.error.c_str());
          continue;
        }
        const double theory = TheoreticalBubble(*schedule);
        std::string mem;
        for (int64_t b : r.arena_bytes) mem += (mem.empty() ? "" : " ") + std::to_string(b / 1048576.0).substr(0, 5);
        std::printf("%-12s %6d %4d %8.1f %10.3f %10.3f %12s %8.2f  %s%s\n", std::string(ScheduleName(kind)).c_str(), P,
                    M, r.step_ms, r.bubble, theory,
                    theory > 0 ? std::to_string(r.bubble / theory).substr(0, 5).c_str() : "-", r.step_ms / M,
                    mem.c_str(), static_cast<unsigned>(P) > cores ? "  (oversubscribed)" : "");
        std::fflush(stdout);
      }
    }
  }
  if (replay) {
    // Replayed: every schedule's lists with each virtual stage's measured costs (one
    // chunk at a time, one thread: no contention, no communication), the bubble and
    // step time P uncontended devices would give.
    std::printf("\nreplayed with measured action costs (ms per virtual stage, one thread each, median of %d):\n",
                std::max(3, steps));
    std::printf("%-12s %6s %4s %10s %10s %12s %10s  %s\n", "schedule", "stages", "M", "bubble", "theory",
                "step ms", "vs 1f1b", "costs F/B/W of the first and last virtual stage");
    for (int P : stage_counts) {
      std::vector<ActionCosts> costs_fused, costs_split, costs_fused2, costs_split2;
      for (int M : {4, 8, 16}) {
        double one_f_one_b = 0;
        for (ScheduleKind kind : {ScheduleKind::kGpipe, ScheduleKind::k1f1b, ScheduleKind::kInterleaved,
                                  ScheduleKind::kZbH1, ScheduleKind::kZbv}) {
          const int chunks = kind == ScheduleKind::kInterleaved || kind == ScheduleKind::kZbv ? 2 : 1;
          auto schedule = MakeSchedule(kind, P, M, chunks);
          if (!schedule.ok()) continue;
          // Costs depend on the cut (chunks) and the backward's split only.
          std::vector<ActionCosts>& costs = chunks == 1 ? (schedule->split_backward() ? costs_split : costs_fused)
                                                        : (schedule->split_backward() ? costs_split2 : costs_fused2);
          if (costs.empty()) costs = MeasureCosts(*schedule, std::max(3, steps));
          if (costs.empty()) {
            std::printf("%-12s %6d %4d  cost measurement failed\n", std::string(ScheduleName(kind)).c_str(), P, M);
            continue;
          }
          auto tl = Simulate(*schedule, costs);
          if (!tl.ok()) continue;
          if (kind == ScheduleKind::k1f1b) one_f_one_b = tl->bubble;
          const ActionCosts& a = costs.front();
          const ActionCosts& z = costs.back();
          std::printf("%-12s %6d %4d %10.3f %10.3f %12.1f %10s  %.1f/%.1f/%.1f .. %.1f/%.1f/%.1f\n",
                      std::string(ScheduleName(kind)).c_str(), P, M, tl->bubble, TheoreticalBubble(*schedule),
                      tl->makespan,
                      one_f_one_b > 0 ? std::to_string(tl->bubble / one_f_one_b).substr(0, 5).c_str() : "-",
                      a.forward, a.backward_input, a.backward_weight, z.forward, z.backward_input, z.backward_weight);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
