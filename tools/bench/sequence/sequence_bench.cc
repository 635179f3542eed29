// The longest sequence one GPT (default: the small GPT, 6 layers, d 384, 6 heads, bytes)
// trains at micro-batch 1 within a fixed per-rank memory budget, by layout:
//   sp 1 with the fused attention kernel (T×T probabilities kept) and the blockwise one,
//   sequence parallel 2 and 4 in ring mode (zigzag chunks), 2 and 3 in all-to-all mode
//   (4 does not divide 6 heads: refused, as validation refuses it),
//   tensor parallel (1d, Megatron) 2 and 4 with the blockwise kernel, with and without
//   Megatron sequence parallelism, and 4 with the fused kernel (the seed's setting) — the
//   seed's claim: sequence parallelism trains 3× longer sequences than tensor
//   parallelism on the same GPUs,
//   ring 2 and 4 with ZeRO 3 over the sequence group (planned only: the parameter state
//   ÷ S).
// A rank's bytes are its planned ones: the activation arena of its graph's forward +
// backward (values and op scratch, graph/memory_plan.h, exact for the executor) plus
// parameters, gradients and AdamW's two moments (4 × 4 bytes per parameter it holds;
// wpe grows with T). The longest T (a multiple of --step) whose bytes fit is found by
// search over the plans. With --time 1 each layout then trains at its longest T in
// forked processes over UCX on loopback (one warm-up and one timed forward + backward):
// the step's time, the job's tokens/s, and every rank's peak RSS beside the plan.
// All ranks share this machine's cores: tokens/s across rows compare the layouts'
// compute and transfers on 2 cores, not a cluster's.
//   bazel run -c opt //tools/bench/sequence:sequence_bench -- [--budget-mib 1024]
//       [--step 768] [--time 0] [--layers 6 --heads 6 --d-model 384 --vocab 256]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <thread>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/memory_plan.h"
#include "graph/models/gpt.h"
#include "graph/schedule.h"
#include "memory/param_store.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"
#include "parallel/sequence/sequence_layout.h"

namespace colossal {
namespace {

struct Options {
  graph::GptConfig gpt{6, 6, 384, 0, 256};
  int64_t budget = int64_t{1024} << 20;
  int64_t step = 768;
  int64_t max_seq = 1 << 20;
  bool time = false;
};

struct Layout {
  std::string name;
  int sp = 1;
  bool a2a = false;
  int tp = 1;
  bool block = true;
  bool zigzag = true;  // ring
  bool megatron_sp = false;  // tensor: Megatron sequence parallelism
  // ZeRO 3 over the sequence group (its ranks are the parameters' replicas): the
  // parameter state planned ÷ S, its per-group gather buffers not counted; not timed
  // (this bench runs no data-parallel engine).
  bool zero3 = false;
  int ranks() const { return sp * tp; }
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

graph::GptConfig ConfigAt(const Options& o, const Layout& l, int64_t T) {
  graph::GptConfig g = o.gpt;
  g.seq_len = T;
  g.block_attention = l.block;
  return g;
}

absl::StatusOr<graph::Graph> Build(const Options& o, const Layout& l, int64_t T, int sp_rank, int tp_rank) {
  graph::GptTensorParallel tp;
  tp.size = l.tp;
  tp.rank = tp_rank;
  tp.sequence_parallel = l.megatron_sp;
  auto g = graph::BuildGpt(ConfigAt(o, l, T), 1, tp, graph::GptPass::kTrain, {l.sp, sp_rank, l.a2a, l.zigzag});
  if (!g.ok()) return g.status();
  if (absl::Status s = graph::BuildBackward(*g); !s.ok()) return s;
  return g;
}

struct Planned {
  int64_t arena = 0, state = 0;
  int64_t total() const { return arena + state; }
};

absl::StatusOr<Planned> Plan(const Options& o, const Layout& l, int64_t T) {
  auto g = Build(o, l, T, 0, 0);
  if (!g.ok()) return g.status();
  auto plan = graph::PlanMemory(*g, graph::OverlapCommunication(*g, graph::DefaultSchedule(*g)));
  if (!plan.ok()) return plan.status();
  Planned p;
  p.arena = plan->arena_bytes;
  p.state = 4 * 4 * memory::ParamStore::FlatNumel(graph::ParamSpecs(*g)) / (l.zero3 ? l.sp : 1);
  return p;
}

// The longest multiple of o.step that fits the budget (0: none).
int64_t Longest(const Options& o, const Layout& l) {
  auto fits = [&](int64_t T) {
    auto p = Plan(o, l, T);
    return p.ok() && p->total() <= o.budget;
  };
  if (!fits(o.step)) return 0;
  int64_t lo = 1, hi = 2;  // in steps: lo fits
  while (hi * o.step <= o.max_seq && fits(hi * o.step)) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (fits(mid * o.step) ? lo : hi) = mid;
  }
  return lo * o.step;
}

// One rank of a timed run at T: world rank = s · tp + t (sequence outside tensor).
absl::Status TimedRank(const Options& o, const Layout& l, int64_t T, int rank, int size, parallel::TcpStore& store) {
  // The machine's cores shared between the ranks.
  omp_set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / size));
  std::unique_ptr<parallel::Communicator> world, seq, tensor;
  if (size > 1) {
    parallel::CommOptions co;
    co.timeout = std::chrono::milliseconds(1200000);
    auto c = parallel::CreateUcxCommunicator(store, co);
    if (!c.ok()) return c.status();
    world = std::move(*c);
  }
  const int s = rank / l.tp, t = rank % l.tp;
  std::vector<int> seq_ranks, tensor_ranks;
  for (int x = 0; x < l.sp; ++x) seq_ranks.push_back(x * l.tp + t);
  for (int x = 0; x < l.tp; ++x) tensor_ranks.push_back(s * l.tp + x);
  if (l.sp > 1) {
    auto c = l.tp == 1 ? absl::StatusOr<std::unique_ptr<parallel::Communicator>>(nullptr) : world->Split(seq_ranks);
    if (!c.ok()) return c.status();
    seq = std::move(*c);
  }
  if (l.tp > 1) {
    auto c = l.sp == 1 ? absl::StatusOr<std::unique_ptr<parallel::Communicator>>(nullptr) : world->Split(tensor_ranks);
    if (!c.ok()) return c.status();
    tensor = std::move(*c);
  }
  auto g = Build(o, l, T, s, t);
  if (!g.ok()) return g.status();
  memory::ParamStore params(graph::ParamSpecs(*g));
  for (int i = 0; i < params.size(); ++i) {
    float* d = params.data(i);
    for (int64_t k = 0; k < params.info(i).numel; ++k) d[k] = 0.02f * static_cast<float>((k * 7919 % 201) - 100) / 100.0f;
  }
  auto ex = graph::Executor::Create(&*g, &params, graph::OverlapCommunication(*g, graph::DefaultSchedule(*g)));
  if (!ex.ok()) return ex.status();
  graph::Executor& e = **ex;
  if (l.sp > 1) e.SetGroup("sequence", seq ? seq.get() : world.get());
  if (l.tp > 1) e.SetGroup("tensor", tensor ? tensor.get() : world.get());
  const parallel::SequenceLayout layout = graph::GptSequenceParallel{l.sp, s, l.a2a, l.zigzag}.Layout(T);
  int32_t* ids = e.Data<int32_t>(g->Find("ids"));
  int32_t* targets = e.Data<int32_t>(g->Find("targets"));
  int32_t* positions = e.Data<int32_t>(g->Find("positions"));
  parallel::FillPositions(positions, 1, layout);
  for (int64_t i = 0; i < layout.local_len(); ++i) {
    ids[i] = static_cast<int32_t>((positions[i] * 31 + 7) % o.gpt.vocab);
    targets[i] = static_cast<int32_t>((positions[i] * 17 + 3) % o.gpt.vocab);
  }
  e.Data<float>(g->loss_seed())[0] = 1.0f;
  e.Forward();  // warm-up
  e.Backward(0);
  if (world) {
    if (absl::Status st = world->Barrier()->Wait(); !st.ok()) return st;
  }
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  const double cpu0 = before.ru_utime.tv_sec + before.ru_utime.tv_usec * 1e-6;
  const double t0 = Now();
  e.Forward();
  e.Backward(1);
  if (world) {
    if (absl::Status st = world->Barrier()->Wait(); !st.ok()) return st;
  }
  const double dt = Now() - t0;
  if (!e.status().ok()) return e.status();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  // Peak RSS (MiB) and the CPU seconds of the timed step (the causal balance: a rank
  // with more unmasked blocks computes longer).
  const float mine[2] = {static_cast<float>(ru.ru_maxrss / 1024.0),
                         static_cast<float>(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 - cpu0)};
  std::vector<float> all(2 * size);
  if (world) {
    if (absl::Status st = world->AllGather(mine, all.data(), 2, parallel::DType::kF32)->Wait(); !st.ok()) return st;
  } else {
    all = {mine[0], mine[1]};
  }
  if (rank == 0) {
    // The plan without AdamW's moments (no optimizer runs here): arena + parameters + gradients.
    const auto planned = Plan(o, l, T);
    const double plan_mib = planned.ok() ? (planned->arena + planned->state / 2) / 1048576.0 : 0.0;
    float peak = 0, lo = 1e30f, hi = 0;
    for (int r = 0; r < size; ++r) {
      peak = std::max(peak, all[2 * r]);
      lo = std::min(lo, all[2 * r + 1]);
      hi = std::max(hi, all[2 * r + 1]);
    }
    std::printf("  timed  %-22s T %6lld: step %8.2f s, %8.1f tokens/s, peak RSS %7.1f MiB per rank (max of %d), "
                "planned %.1f MiB without the moments, CPU s per rank %.2f .. %.2f (max/min %.2f)\n",
                l.name.c_str(), static_cast<long long>(T), dt, static_cast<double>(T) / dt, peak, size, plan_mib, lo,
                hi, hi / lo);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    int64_t v = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &v)) return false;
    if (key == "--budget-mib") o->budget = v << 20;
    else if (key == "--step") o->step = v;
    else if (key == "--max-seq") o->max_seq = v;
    else if (key == "--time") o->time = v != 0;
    else if (key == "--layers") o->gpt.n_layer = v;
    else if (key == "--heads") o->gpt.n_head = v;
    else if (key == "--d-model") o->gpt.d_model = v;
    else if (key == "--vocab") o->gpt.vocab = v;
    else return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr, "usage: sequence_bench [--budget-mib N] [--step N] [--time 0|1] [--layers N --heads N "
                         "--d-model N --vocab N]\n");
    return 2;
  }
  const std::vector<Layout> layouts = {
      {.name = "sp 1, fused kernel", .block = false},
      {.name = "sp 1, blockwise"},
      {.name = "tensor 2 (1d)", .tp = 2},
      {.name = "tensor 4 (1d)", .tp = 4},
      {.name = "tensor 2 (1d + sp)", .tp = 2, .megatron_sp = true},
      {.name = "tensor 4 (1d + sp)", .tp = 4, .megatron_sp = true},
      {.name = "tensor 4 (1d, fused)", .tp = 4, .block = false},
      {.name = "ring 2 (zigzag)", .sp = 2},
      {.name = "ring 4 (zigzag)", .sp = 4},
      {.name = "ring 4 (contiguous)", .sp = 4, .zigzag = false},
      {.name = "all_to_all 2", .sp = 2, .a2a = true},
      {.name = "all_to_all 3", .sp = 3, .a2a = true},
      {.name = "all_to_all 4", .sp = 4, .a2a = true},
      {.name = "ring 2, ZeRO 3 (plan)", .sp = 2, .zero3 = true},
      {.name = "ring 4, ZeRO 3 (plan)", .sp = 4, .zero3 = true},
  };

  std::printf("GPT %lld layers, d %lld, %lld heads, vocab %lld, micro-batch 1; budget %.0f MiB per rank "
              "(arena + parameters, gradients, AdamW moments); T in multiples of %lld\n",
              static_cast<long long>(o.gpt.n_layer), static_cast<long long>(o.gpt.d_model),
              static_cast<long long>(o.gpt.n_head), static_cast<long long>(o.gpt.vocab), o.budget / 1048576.0,
              static_cast<long long>(o.step));
  std::printf("%-22s %6s %8s %10s %12s %12s %12s\n", "layout", "ranks", "max T", "x sp1 blk", "arena MiB",
              "state MiB", "total MiB");
  std::vector<int64_t> longest(layouts.size());
  std::vector<std::string> refused(layouts.size());
  for (size_t i = 0; i < layouts.size(); ++i) {
    auto probe = Build(o, layouts[i], o.step, 0, 0);
    if (probe.ok()) {
      longest[i] = Longest(o, layouts[i]);
    } else {
      refused[i] = std::string(probe.status().message());
    }
  }
  for (size_t i = 0; i < layouts.size(); ++i) {
    const Layout& l = layouts[i];
    if (!refused[i].empty()) {
      std::printf("%-22s %6d   refused: %s\n", l.name.c_str(), l.ranks(), refused[i].c_str());
      continue;
    }
    const auto p = longest[i] > 0 ? Plan(o, l, longest[i]) : absl::StatusOr<Planned>(Planned{});
    std::printf("%-22s %6d %8lld %10.2f %12.1f %12.1f %12.1f\n", l.name.c_str(), l.ranks(),
                static_cast<long long>(longest[i]),
                longest[1] > 0 ? static_cast<double>(longest[i]) / static_cast<double>(longest[1]) : 0.0,
                p->arena / 1048576.0, p->state / 1048576.0, p->total() / 1048576.0);
    std::fflush(stdout);
  }
  auto ratio = [&](size_t a, size_t b) { return longest[b] > 0 ? static_cast<double>(longest[a]) / longest[b] : 0.0; };
  std::printf("longer than tensor parallelism at the same ranks (seed claim: 3x at 4): ring 2 / tensor 2 %.2fx, "
              "ring 4 / tensor 4 %.2fx, all_to_all 2 / tensor 2 %.2fx, all_to_all 4 / tensor 4 %.2fx; against "
              "tensor with Megatron sp: ring 2 %.2fx, ring 4 %.2fx\n",
              ratio(7, 2), ratio(8, 3), ratio(10, 2), ratio(12, 3), ratio(7, 4), ratio(8, 5));
  std::printf("with the parameter state sharded over the sequence group (ZeRO 3, planned): ring 2 / tensor 2 %.2fx, "
              "ring 4 / tensor 4 %.2fx, ring 4 / tensor 4 with Megatron sp %.2fx\n",
              ratio(13, 2), ratio(14, 3), ratio(14, 5));
  std::printf("the seed's setting (tensor parallelism keeping T x T scores, the fused kernel): ring 4 / tensor 4 "
              "fused %.2fx\n",
              ratio(8, 6));
  if (!o.time) return 0;
  for (size_t i = 0; i < layouts.size(); ++i) {
    if (longest[i] == 0 || layouts[i].zero3) continue;
    const Layout l = layouts[i];
    const int64_t T = longest[i];
    parallel::testing::ForkOptions fo;
    fo.deadline = std::chrono::milliseconds(3600000);
    fo.store_timeout = std::chrono::milliseconds(60000);
    auto exits = parallel::testing::ForkRanks(
        l.ranks(), [&](int r, int n, parallel::TcpStore& s) { return TimedRank(o, l, T, r, n, s); }, fo);
    const std::string failures = parallel::testing::Failures(exits);
    if (!failures.empty()) std::printf("  %s failed:\n%s\n", l.name.c_str(), failures.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace colossal

int main(int argc, char** argv) { return colossal::Main(argc, argv); }
