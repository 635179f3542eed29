// Tensor-parallel training step of one GPT, split 1D (Megatron) over P ranks, with and
// without Megatron sequence parallelism (sp: all-gather / reduce-scatter in place of
// each all-reduce, the layer-norm regions split over the tokens), 2D on a q×q grid where
// P is a square, 2.5D on 2×q×q where P/2 is one (the depth splits the micro-batch;
// its weight gradients' sum across the depth, once per step, is not in the figures) and
// 3D on a q×q×q cube where P is a cube (analytic: Cube3dBytes's closed form; its
// vectors' partial gradients, summed once per step, are not in the figures)
// (the analytic volume: the SUMMA broadcasts, gathers and
// reductions and the 2d norms' and embedding's collectives, op by op, from
// graph/comm_volume.h; measured: the grid row and column groups together): forked
// processes over UCX on loopback (parallel/comm/testing/fork_ranks), each building its
// part of the graph (graph/models/gpt.h) and running forward + backward. Prints, per P:
// forward and backward time per micro-batch, tokens/s, the bytes each rank sent over its
// tensor group per micro-batch (Communicator::bytes_sent), beside the analytic volume
// of the 1D mode — (4L + 2) all-reduces of the activation A = B·T·C·4 bytes at the ring's
// 2(P−1)/P, plus the vocab-parallel cross-entropy's all-gather of (P−1)·2·B·T·4 — and
// their ratio (sp moves the same bytes: an all-gather and a reduce-scatter of (P−1)/P in
// place of each all-reduce, in each pass), and the parameter and activation (arena:
// values and op scratch) bytes per rank, with the largest op scratch (the gathered
// blocks of SUMMA and 3D, planned per node). On a 2-core machine the times mean little; the bytes are exact.
//   bazel run -c opt //tools/bench/tensor_parallel:tensor_parallel_bench -- [--ranks 1,2,4,8]
//       [--layers 4 --heads 8 --d-model 256 --seq 128 --vocab 4096 --batch 4 --iters 3]
//       [--overlap 1]   (0: every collective waited for where it is issued)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "graph/autodiff.h"
#include "graph/comm_volume.h"
#include "graph/executor.h"
#include "graph/models/gpt.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"

namespace colossal {
namespace {

struct Options {
  std::vector<int> ranks = {1, 2, 4, 8};
  graph::GptConfig gpt{4, 8, 256, 128, 4096};
  int64_t batch = 4;
  int iters = 3;
  bool overlap = true;  // the trainer's schedule: collectives posted early where they can be
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

enum class Mode { k1d, kSp, k2d, k2p5d, k3d };
const char* ModeName(Mode m) {
  return m == Mode::k1d ? "1d" : m == Mode::kSp ? "1d+sp" : m == Mode::k2d ? "2d" : m == Mode::k2p5d ? "2.5d" : "3d";
}

// Bytes one rank sends per micro-batch in 3D on a q×q×q cube (gpt.h), in closed form at
// the ring volumes (an all-gather of n local elements over q ranks sends (q−1)·n, a
// reduce-scatter to n local ones (q−1)·n). Each linear x[N, K]·W[K, M] (linear_3d)
// gathers x and W and reduce-scatters the product; its backward gathers dy, x and W and
// reduce-scatters dx and dW: (q−1)/q³·(3NK + 3KM + 2NM); per layer the four linears
// (C→3C, C→C, C→4C, 4C→C) make 39NC + 36C². Each layer norm all-reduces two row sums
// over q in each pass: 8(q−1)N/q³. The embedding gathers wte (2(q−1)VC/q³ both ways)
// and reduce-scatters the looked-up rows (2(q−1)NC/q³ both ways); the tied head is a
// linear over wteᵀ (K = C, M = V); the vocab-parallel cross-entropy all-gathers a (max,
// sum) pair per local token over q: 2(q−1)N/q². (The paper's bandwidth term, 6(q−1)/q³
// of a linear's matrices, is this with x and W kept between the passes instead of
// gathered again: 2(NK + KM + NM).)
double Cube3dBytes(const graph::GptConfig& c, int64_t batch, int64_t q) {
  const double N = static_cast<double>(batch * c.seq_len), C = static_cast<double>(c.d_model),
               V = static_cast<double>(c.vocab), L = static_cast<double>(c.n_layer);
  const double k = static_cast<double>(q - 1) / static_cast<double>(q * q * q);
  const double elements = k * L * (39 * N * C + 36 * C * C) + (2 * L + 1) * 8 * k * N +
                          2 * k * V * C + 2 * k * N * C + k * (3 * N * C + 3 * V * C + 2 * N * V) +
                          2 * k * static_cast<double>(q) * N;
  return 4 * elements;
}

absl::Status RunRank(const Options& o, Mode mode, int rank, int size, parallel::TcpStore& store) {
  const bool sp = mode == Mode::kSp, two_d = mode == Mode::k2d || mode == Mode::k2p5d;
  const bool three_d = mode == Mode::k3d, grid = two_d || three_d;
  const int64_t depth = mode == Mode::k2p5d ? 2 : 1;
  const graph::GptTensorParallel tp{size, rank, "tensor", sp, two_d, depth, three_d};
  std::unique_ptr<parallel::Communicator> comm;
  if (size > 1) {
    parallel::CommOptions co;
    co.timeout = std::chrono::milliseconds(120000);
    auto c = parallel::CreateUcxCommunicator(store, co);
    if (!c.ok()) return c.status();
    comm = std::move(*c);
  }
  const int q = static_cast<int>(tp.grid_q());
  // 2d: the grid column and row groups; 3d: the cube's three axes.
  std::unique_ptr<parallel::Communicator> row, col, dep;
  if (grid) {
    // rank = (k·q + i)·q + j (2.5d: depth slice k; 3d: (a, b, c)).
    const int k0 = rank / (q * q), i0 = (rank / q) % q, j0 = rank % q;
    std::vector<int> r, c, d;
    for (int x = 0; x < q; ++x) {
      r.push_back((k0 * q + x) * q + j0);
      c.push_back((k0 * q + i0) * q + x);
      d.push_back((x * q + i0) * q + j0);
    }
    auto rs = comm->Split(r);
    if (!rs.ok()) return rs.status();
    auto cs = comm->Split(c);
    if (!cs.ok()) return cs.status();
    row = std::move(*rs);
    col = std::move(*cs);
    if (three_d) {
      auto ds = comm->Split(d);
      if (!ds.ok()) return ds.status();
      dep = std::move(*ds);
    }
  }
  auto built = graph::BuildGpt(o.gpt, o.batch, tp);
  if (!built.ok()) return built.status();
  graph::Graph g = std::move(*built);
  if (absl::Status s = graph::BuildBackward(g); !s.ok()) return s;
  memory::ParamStore params(graph::ParamSpecs(g));
  for (int i = 0; i < params.size(); ++i) {
    float* d = params.data(i);
    for (int64_t k = 0; k < params.info(i).numel; ++k) d[k] = 0.02f * static_cast<float>((k * 7919 % 201) - 100) / 100.0f;
  }
  const graph::Schedule base = graph::DefaultSchedule(g);
  auto ex = graph::Executor::Create(&g, &params, o.overlap ? graph::OverlapCommunication(g, base) : base);
  if (!ex.ok()) return ex.status();
  graph::Executor& e = **ex;
  if (grid) {
    e.SetGroup("row", row.get());
    e.SetGroup("col", col.get());
    if (three_d) e.SetGroup("depth", dep.get());
  } else if (comm) {
    e.SetGroup("tensor", comm.get());
  }
  auto sent = [&]() -> int64_t {
    if (grid) return row->bytes_sent() + col->bytes_sent() + (dep ? dep->bytes_sent() : 0);
    return comm ? comm->bytes_sent() : 0;
  };
  const int64_t n = o.batch * o.gpt.seq_len;
  int32_t* ids = e.Data<int32_t>(g.Find("ids"));
  int32_t* targets = e.Data<int32_t>(g.Find("targets"));
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = static_cast<int32_t>((i * 31 + 7) % o.gpt.vocab);
    targets[i] = static_cast<int32_t>((i * 17 + 3) % o.gpt.vocab);
  }
  graph::FillPositions(e.Data<int32_t>(g.Find("positions")), o.batch, o.gpt.seq_len);
  e.Data<float>(g.loss_seed())[0] = 1.0f;
  e.Forward();  // warm-up
  e.Backward(0);
  double fwd = 1e30, bwd = 1e30;
  int64_t bytes = 0;
  for (int it = 0; it < o.iters; ++it) {
    if (comm) {
      if (absl::Status s = comm->Barrier()->Wait(); !s.ok()) return s;
    }
    const int64_t before = sent();
    const double t0 = Now();
    e.Forward();
    const double t1 = Now();
    e.Backward(1);
    const double t2 = Now();
    if (!e.status().ok()) return e.status();
    bytes = sent() - before;
    fwd = std::min(fwd, t1 - t0);
    bwd = std::min(bwd, t2 - t1);
  }
  if (rank == 0) {
    const double L = static_cast<double>(o.gpt.n_layer), P = size;
    const double A = static_cast<double>(n * o.gpt.d_model * 4);
    // An all-reduce sends 2(P-1)/P of the activation. Under sp every f and g
    // communicates in both passes (an all-gather one way, a reduce-scatter the other),
    // each (P-1)/P: twice as many collectives of half the volume, the same bytes.
    const double per = 2 * (P - 1) / P;
    double analytic =
        size > 1 ? (4 * L + 2) * per * A + (P - 1) * 2 * static_cast<double>(n) * 4 : 0;
    if (two_d) {  // the 2d algorithms' volume, op by op (graph/comm_volume.h)
      analytic = 0;
      for (const auto& [group, b] : graph::CommBytesPerRun(g, {{"row", q}, {"col", q}})) analytic += b;
    }
    if (three_d) analytic = Cube3dBytes(o.gpt, o.batch, q);
    std::printf("%5d %5s %9.1f %9.1f %9.0f %14lld %14.0f %7.4f %12.2f %12.2f %12.2f\n", size,
                ModeName(mode), fwd * 1e3, bwd * 1e3, static_cast<double>(n) / (fwd + bwd), static_cast<long long>(bytes),
                analytic, analytic > 0 ? bytes / analytic : 1.0,
                params.flat_numel() * 4 / 1048576.0, e.plan().arena_bytes / 1048576.0,
                e.plan().max_scratch_bytes / 1048576.0);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    int64_t v = 0;
    if (key == "--ranks") {
      o->ranks.clear();
      for (absl::string_view r : absl::StrSplit(value, ',')) {
        if (!absl::SimpleAtoi(r, &v) || v < 1) return false;
        o->ranks.push_back(static_cast<int>(v));
      }
      continue;
    }
    if (!absl::SimpleAtoi(value, &v) || (v < 1 && key != "--overlap")) return false;
    if (key == "--layers") o->gpt.n_layer = v;
    else if (key == "--heads") o->gpt.n_head = v;
    else if (key == "--d-model") o->gpt.d_model = v;
    else if (key == "--seq") o->gpt.seq_len = v;
    else if (key == "--vocab") o->gpt.vocab = v;
    else if (key == "--batch") o->batch = v;
    else if (key == "--iters") o->iters = static_cast<int>(v);
    else if (key == "--overlap") o->overlap = v != 0;
    else return false;
  }
  return argc % 2 == 1;
}

}  // namespace
}  // namespace colossal

int main(int argc, char** argv) {
  using namespace colossal;
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr, "usage: tensor_parallel_bench [--ranks 1,2,4,8] [--layers L] [--heads H] "
                         "[--d-model C] [--seq T] [--vocab V] [--batch B] [--iters N] [--overlap 0|1]\n");
    return 2;
  }
  std::printf("GPT L=%lld H=%lld C=%lld T=%lld V=%lld, micro-batch %lld; tensor parallel "
              "1d (Megatron), 1d + sequence parallel, 2d (SUMMA), 2.5d (depth 2), 3d; UCX on loopback; best of %d\n",
              static_cast<long long>(o.gpt.n_layer), static_cast<long long>(o.gpt.n_head),
              static_cast<long long>(o.gpt.d_model), static_cast<long long>(o.gpt.seq_len),
              static_cast<long long>(o.gpt.vocab), static_cast<long long>(o.batch), o.iters);
  std::printf("%5s %5s %9s %9s %9s %14s %14s %7s %12s %12s %12s\n", "P", "mode", "fwd ms", "bwd ms",
              "tok/s", "sent B/rank", "analytic B", "ratio", "params MiB", "arena MiB", "scratch MiB");
  std::fflush(stdout);
  for (int p : o.ranks) for (Mode mode : {Mode::k1d, Mode::kSp, Mode::k2d, Mode::k2p5d, Mode::k3d}) {
    if (p == 1 && mode != Mode::k1d) continue;
    const int64_t depth = mode == Mode::k2p5d ? 2 : 1;
    const bool cube = mode == Mode::k3d;
    int q = 1;
    while ((cube ? q * q * q : q * q * depth) < p) ++q;
    const bool grid = mode == Mode::k2d || mode == Mode::k2p5d;
    // 2d: a square; 2.5d: 2 x a square; 3d: a cube.
    if ((grid || cube) && ((cube ? q * q * q : q * q * depth) != p || q < 2)) continue;
    graph::GptTensorParallel split;
    split.size = p;
    split.two_d = grid;
    split.depth = depth;
    split.three_d = cube;
    split.sequence_parallel = mode == Mode::kSp;
    if (auto s = graph::CheckGptTensorParallel(o.gpt, split, o.batch); !s.ok()) {
      std::printf("%5d  skipped: %s\n", p, std::string(s.message()).c_str());
      continue;
    }
    parallel::testing::ForkOptions fo;
    fo.deadline = std::chrono::seconds(600);
    auto exits = parallel::testing::ForkRanks(
        p, [&](int rank, int size, parallel::TcpStore& store) { return RunRank(o, mode, rank, size, store); },
        fo);
    const std::string failures = parallel::testing::Failures(exits);
    if (!failures.empty()) std::printf("%5d  failed: %s\n", p, failures.c_str());
  }
  return 0;
}
