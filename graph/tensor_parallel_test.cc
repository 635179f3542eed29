// Tensor parallelism in the graph: the layout mapping (local elements to global runs)
// against a direct index computation, and the 1D (Megatron) GPT of 2 and 4 ranks —
// forked processes over UCX on loopback — against the whole model built in the same
// process: the loss of every rank and every rank's parameter gradients, element by
// element through its layout, equal the single-rank values — with and without Megatron
// sequence parallelism (whose partial gradients are summed over the group first), and
// in 2D on a 2x2 grid (SUMMA products, 2D layer norms and embedding).
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/layout.h"
#include "graph/models/gpt.h"
#include "graph/split_testing.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"

namespace colossal::graph {
namespace {

// Global flat index of every local element, computed coordinate by coordinate.
std::vector<int64_t> DirectMap(const Layout& layout) {
  const Shape local = LocalShape(layout);
  const int64_t n = NumElements(local);
  std::vector<int64_t> out(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, g = 0, stride = 1;
    std::vector<int64_t> idx(local.size());
    for (int d = static_cast<int>(local.size()) - 1; d >= 0; --d) {
      idx[d] = rem % local[d];
      rem /= local[d];
    }
    for (int d = static_cast<int>(local.size()) - 1; d >= 0; --d) {
      int64_t x = idx[d];
      for (const DimSplit& s : layout.splits) {
        if (s.dim != d) continue;
        const int64_t block = local[d] / s.interleave;
        x = (x / block) * (layout.global[d] / s.interleave) + s.part * block + x % block;
      }
      g += x * stride;
      stride *= layout.global[d];
    }
    out[i] = g;
  }
  return out;
}

TEST_CASE("layout: global runs of any local range match the direct index map") {
  struct Case {
    Shape global;
    std::vector<DimSplit> splits;
  };
  const std::vector<Case> cases = {
      {{12, 18}, {{1, 2, 1, 3, "tensor"}}},               // packed q|k|v columns
      {{12, 18}, {{0, 3, 2, 1, "tensor"}}},               // rows
      {{8, 6, 10}, {{0, 2, 1, 1, "row"}, {2, 5, 3, 1, "col"}}},  // two axes
      {{30}, {{0, 3, 1, 2, "tensor"}}},                    // a bias in two blocks
  };
  for (const Case& c : cases) {
    auto layout = MakeLayout(c.global, c.splits);
    REQUIRE(layout.ok());
    const Shape local = LocalShape(*layout);
    const std::vector<int64_t> expect = DirectMap(*layout);
    const int64_t n = NumElements(local);
    for (int64_t offset : {int64_t{0}, int64_t{1}, n / 3, n - 1}) {
      for (int64_t count : {int64_t{1}, n - offset, (n - offset) / 2}) {
        if (count < 1) continue;
        CAPTURE(LayoutString(*layout), offset, count);
        int64_t covered = 0, next_local = offset;
        for (const ElementRun& r : GlobalRuns(local, *layout, offset, count)) {
          REQUIRE(r.local == next_local);
          for (int64_t k = 0; k < r.count; ++k) REQUIRE(expect[r.local + k] == r.global + k);
          next_local += r.count;
          covered += r.count;
        }
        REQUIRE(covered == count);
      }
    }
  }
  // Not divisible: named.
  auto bad = MakeLayout({10, 6}, {{1, 4, 0, 1, "tensor"}});
  REQUIRE(!bad.ok());
  REQUIRE(std::string(bad.status().message()).find("dimension 1 (6) is not divisible by 4") !=
          std::string::npos);
  // Whole: one run.
  auto whole = MakeLayout({4, 4}, {});
  REQUIRE(whole.ok());
  REQUIRE(GlobalRuns({4, 4}, *whole, 3, 9).size() == 1);
}

struct Built {
  Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<Executor> executor;
};

// Heap-held: the executor points at the graph and the store.
// The parts run the trainer's schedule: collectives overlapped where they can be.
absl::StatusOr<std::unique_ptr<Built>> Build(const GptConfig& cfg, int64_t batch,
                                             const GptTensorParallel& tp, bool overlap = false) {
  auto owned = std::make_unique<Built>();
  Built& b = *owned;
  auto g = BuildGpt(cfg, batch, tp);
  if (!g.ok()) return g.status();
  b.graph = std::move(*g);
  if (absl::Status s = BuildBackward(b.graph); !s.ok()) return s;
  b.params = std::make_unique<memory::ParamStore>(ParamSpecs(b.graph));
  const Schedule base = DefaultSchedule(b.graph);
  auto ex = Executor::Create(&b.graph, b.params.get(), overlap ? OverlapCommunication(b.graph, base) : base);
  if (!ex.ok()) return ex.status();
  b.executor = std::move(*ex);
  return owned;
}

enum class Mode { k1d, k1dSequence, k2d, k2p5d, k3d };

absl::Status RunTensorParallel(int rank, int size, parallel::TcpStore& store, Mode mode) {
  const bool sp = mode == Mode::k1dSequence, two_d = mode == Mode::k2d || mode == Mode::k2p5d;
  const bool three_d = mode == Mode::k3d, grid = two_d || three_d;
  // 3d: the cube's depth is its side.
  const int depth = mode == Mode::k2p5d || three_d ? 2 : 1;
  const GptConfig cfg{2, 4, 32, 8, 64};
  const int64_t batch = 2 * depth, T = cfg.seq_len;
  parallel::CommOptions options;
  options.timeout = std::chrono::milliseconds(20000);
  auto comm = parallel::CreateUcxCommunicator(store, options);
  if (!comm.ok()) return comm.status();
  auto whole = Build(cfg, batch, {});
  if (!whole.ok()) return whole.status();
  GptTensorParallel tp{size, rank, "tensor", sp, two_d, three_d ? 1 : depth, three_d};
  auto part = Build(cfg, batch, tp, /*overlap=*/true);
  if (!part.ok()) return part.status();
  // 1d posts its input gradients' all-reduces (sp: its gathers and scatters) early.
  int waits = 0;
  for (const ScheduleEntry& e : (*part)->executor->schedule().entries) waits += e.phase == Phase::kCommWait;
  if (!grid && waits == 0) return absl::InternalError("no collective overlaps in 1d");
  // 2D: "row" is the grid column (ranks that differ in the row index i), "col" the grid row;
  // 2.5D: rank = (k·q + i)·q + j, "depth" the ranks that differ in k; 3D the same with
  // (k, i, j) = (a, b, c).
  const int q = grid ? static_cast<int>(std::lround(std::sqrt(size / depth))) : 1;
  std::unique_ptr<parallel::Communicator> row_comm, col_comm, depth_comm;
  if (grid) {
    const int k0 = rank / (q * q), i0 = (rank / q) % q, j0 = rank % q;
    std::vector<int> row, col, dep;
    for (int x = 0; x < q; ++x) {
      row.push_back((k0 * q + x) * q + j0);
      col.push_back((k0 * q + i0) * q + x);
    }
    for (int x = 0; x < depth; ++x) dep.push_back((x * q + i0) * q + j0);
    auto r = (*comm)->Split(row);
    if (!r.ok()) return r.status();
    auto c = (*comm)->Split(col);
    if (!c.ok()) return c.status();
    row_comm = std::move(*r);
    col_comm = std::move(*c);
    if (depth > 1) {
      auto d = (*comm)->Split(dep);
      if (!d.ok()) return d.status();
      depth_comm = std::move(*d);
    }
    (*part)->executor->SetGroup("row", row_comm.get());
    (*part)->executor->SetGroup("col", col_comm.get());
    if (three_d) (*part)->executor->SetGroup("depth", depth_comm.get());
  } else {
    (*part)->executor->SetGroup("tensor", comm->get());
  }

  std::vector<int32_t> ids(batch * T), targets(batch * T);
  for (int64_t i = 0; i < batch * T; ++i) {
    ids[i] = static_cast<int32_t>((i * 37 + 5) % cfg.vocab);
    targets[i] = static_cast<int32_t>((i * 11 + 3) % cfg.vocab);
  }
  for (Built* b : {whole->get(), part->get()}) {
    Graph& g = b->graph;
    testing::SetGlobalParams(g, *b->params);
    Executor& ex = *b->executor;
    std::copy(ids.begin(), ids.end(), ex.Data<int32_t>(g.Find("ids")));
    std::copy(targets.begin(), targets.end(), ex.Data<int32_t>(g.Find("targets")));
    FillPositions(ex.Data<int32_t>(g.Find("positions")), batch, T);
    // A 2D rank's loss is its token block's mean, 1/(q·depth) of the micro-batch's.
    ex.Data<float>(g.loss_seed())[0] = b == part->get() ? 1.0f / static_cast<float>(q * depth) : 1.0f;
    // Two micro-steps: the second accumulates into the parameter gradients.
    for (int m = 0; m < 2; ++m) {
      ex.Forward();
      ex.Backward(m);
    }
    if (!ex.status().ok()) return ex.status();
  }
  const float loss = (*whole)->executor->Data<float>((*whole)->graph.loss())[0];
  float tp_loss = (*part)->executor->Data<float>((*part)->graph.loss())[0];
  if (grid) {  // the mean of the blocks' means
    if (absl::Status s = (*comm)->AllReduce(&tp_loss, 1, parallel::DType::kF32)->Wait(); !s.ok()) return s;
    tp_loss /= static_cast<float>(size);
  }
  if (std::fabs(loss - tp_loss) > 1e-5f * std::fabs(loss)) {
    return absl::InternalError(absl::StrCat("loss ", tp_loss, " but the whole model's is ", loss));
  }
  const Graph& g = (*part)->graph;
  // Sequence parallelism: the whole parameters of the token-split regions have partial
  // gradients; their sum over the group is the gradient.
  for (size_t i = 0; i < g.params().size(); ++i) {
    const Value& v = g.value(g.params()[i]);
    if (v.layout.partial_grad_axes.empty()) continue;
    if (!sp && !grid) return absl::InternalError(absl::StrCat(v.name, " has a partial gradient in 1d"));
    for (const std::string& axis : v.layout.partial_grad_axes) {
      parallel::Communicator* over =
          axis == "row"     ? row_comm.get()
          : axis == "col"   ? col_comm.get()
          : axis == "depth" ? depth_comm.get()
                            : comm->get();
      if (over == nullptr) return absl::InternalError(absl::StrCat(v.name, ": no ", axis, " group"));
      absl::Status s = over->AllReduce((*part)->params->grad(static_cast<int>(i)), v.numel(),
                                       parallel::DType::kF32)->Wait();
      if (!s.ok()) return s;
    }
  }
  return testing::SameGradsAsWhole(g, *(*part)->params, *(*whole)->params);
}

TEST_CASE("1D tensor-parallel GPT over 2 and 4 ranks equals the whole model") {
  for (int size : {2, 4}) {
    CAPTURE(size);
    auto exits = parallel::testing::ForkRanks(
        size, [](int r, int n, parallel::TcpStore& s) { return RunTensorParallel(r, n, s, Mode::k1d); });
    INFO(parallel::testing::Failures(exits));
    for (const auto& e : exits) REQUIRE(e.ok());
  }
}

TEST_CASE("1D tensor-parallel GPT with sequence parallelism equals the whole model") {
  for (int size : {2, 4}) {
    CAPTURE(size);
    auto exits = parallel::testing::ForkRanks(
        size, [](int r, int n, parallel::TcpStore& s) {
          return RunTensorParallel(r, n, s, Mode::k1dSequence);
        });
    INFO(parallel::testing::Failures(exits));
    for (const auto& e : exits) REQUIRE(e.ok());
  }
}

TEST_CASE("2D tensor-parallel GPT on a 2x2 grid equals the whole model") {
  auto exits = parallel::testing::ForkRanks(
      4, [](int r, int n, parallel::TcpStore& s) { return RunTensorParallel(r, n, s, Mode::k2d); });
  INFO(parallel::testing::Failures(exits));
  for (const auto& e : exits) REQUIRE(e.ok());
}

TEST_CASE("2.5D tensor-parallel GPT on a 2x2x2 grid equals the whole model") {
  auto exits = parallel::testing::ForkRanks(
      8, [](int r, int n, parallel::TcpStore& s) { return RunTensorParallel(r, n, s, Mode::k2p5d); });
  INFO(parallel::testing::Failures(exits));
  for (const auto& e : exits) REQUIRE(e.ok());
}

TEST_CASE("3D tensor-parallel GPT on a 2x2x2 cube equals the whole model") {
  auto exits = parallel::testing::ForkRanks(
      8, [](int r, int n, parallel::TcpStore& s) { return RunTensorParallel(r, n, s, Mode::k3d); });
  INFO(parallel::testing::Failures(exits));
  for (const auto& e : exits) REQUIRE(e.ok());
}

TEST_CASE("tensor parallelism refuses a model that does not divide, naming the field") {
  const GptConfig cfg{1, 6, 48, 8, 64};
  auto bad_heads = BuildGpt(cfg, 1, {4, 0, "tensor"});
  REQUIRE(!bad_heads.ok());
  REQUIRE(std::string(bad_heads.status().message()).find("model.n_head: must be a multiple of parallel.tensor.size (4)") !=
          std::string::npos);
  auto bad_vocab = BuildGpt({1, 4, 32, 8, 50}, 1, {4, 0, "tensor"});
  REQUIRE(!bad_vocab.ok());
  REQUIRE(std::string(bad_vocab.status().message()).find("model.vocab: must be a multiple of parallel.tensor.size (4)") != std::string::npos);
  GptTensorParallel cube{8, 0, "tensor", false, false, 1, true};
  auto bad_width = BuildGpt({1, 2, 34, 8, 64}, 4, cube);
  REQUIRE(!bad_width.ok());
  REQUIRE(std::string(bad_width.status().message()).find("model.d_model: must be a multiple of 4 in mode 3d") !=
          std::string::npos);
  auto bad_batch = BuildGpt({1, 2, 32, 8, 64}, 2, cube);
  REQUIRE(!bad_batch.ok());
  REQUIRE(std::string(bad_batch.status().message()).find("train.micro_batch: must be a multiple of 4 in mode 3d") != std::string::npos);
}

}  // namespace
}  // namespace colossal::graph
