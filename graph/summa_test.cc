// SUMMA (2D tensor parallelism's matrix product) on q×q grids of forked ranks over UCX
// (q = 2: 4 processes, q = 3: 9): y = gelu(X·W) (and gelu(X·Wᵀ), the tied LM head's
// form), loss = mean(y), with X [M, K] and W [K, N] ([N, K]) split into q×q blocks (rank (i, j) holds block (i, j) of each, through a
// two-axis Layout) — the output block, the loss, and both gradients, over two
// accumulated micro-steps, equal the whole product's computed in the same process.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/layout.h"
#include "graph/op_registry.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"
#include "runtime/base/status_macros.h"

namespace colossal::graph {
namespace {

constexpr int64_t kM = 12, kK = 6, kN = 12;

std::vector<float> Values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

struct Run {
  Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<Executor> executor;
  int y = -1;
};

// y = gelu(op(x, w)); loss = mean(y); x and w are parameters (so both get gradients).
absl::StatusOr<std::unique_ptr<Run>> Build(Shape x, Shape w, const std::string& op, Attrs attrs) {
  auto r = std::make_unique<Run>();
  Graph& g = r->graph;
  const int px = g.AddParam("x", x, {});
  const int pw = g.AddParam("w", w, {});
  ASSIGN_OR_RETURN(auto y, Apply(g, op, {px, pw}, attrs, {"y"}));
  ASSIGN_OR_RETURN(auto a, Apply(g, "gelu", {y[0]}, {}, {"a"}));
  ASSIGN_OR_RETURN(auto loss, Apply(g, "mean", {a[0]}, {}, {"loss"}));
  g.SetLoss(loss[0]);
  g.MarkOutput(y[0]);
  r->y = y[0];
  RETURN_IF_ERROR(BuildBackward(g));
  r->params = std::make_unique<memory::ParamStore>(
      std::vector<memory::ParamStore::Spec>{{"x", x}, {"w", w}});
  ASSIGN_OR_RETURN(r->executor, Executor::Create(&r->graph, r->params.get()));
  return r;
}

// transposed: y = gelu(X·Wᵀ) through summa_matmul_nt, W [N, K].
absl::Status RunGrid(int rank, int size, parallel::TcpStore& store, bool transposed) {
  const int q = static_cast<int>(std::lround(std::sqrt(size)));
  const int i = rank / q, j = rank % q;
  parallel::CommOptions options;
  options.timeout = std::chrono::milliseconds(30000);
  ASSIGN_OR_RETURN(auto world, parallel::CreateUcxCommunicator(store, options));
  std::vector<int> row, col;
  for (int k = 0; k < q; ++k) row.push_back(i * q + k), col.push_back(k * q + j);
  ASSIGN_OR_RETURN(auto row_comm, world->Split(row));
  ASSIGN_OR_RETURN(auto col_comm, world->Split(col));

  const std::vector<float> X = Values(kM * kK, 1), W = Values(kK * kN, 2);
  const Shape w_shape = transposed ? Shape{kN, kK} : Shape{kK, kN};
  Attrs whole_attrs;
  if (transposed) whole_attrs["transpose_w"] = int64_t{1};
  ASSIGN_OR_RETURN(auto whole, Build({kM, kK}, w_shape, "matmul", whole_attrs));
  std::copy(X.begin(), X.end(), whole->params->data(0));
  std::copy(W.begin(), W.end(), whole->params->data(1));

  auto block = [&](Shape global) {
    return MakeLayout(global, {{0, q, i, 1, "row"}, {1, q, j, 1, "col"}});
  };
  ASSIGN_OR_RETURN(Layout lx, block({kM, kK}));
  ASSIGN_OR_RETURN(Layout lw, block(w_shape));
  ASSIGN_OR_RETURN(Layout ly, block({kM, kN}));
  ASSIGN_OR_RETURN(auto part, Build(LocalShape(lx), LocalShape(lw),
                                    transposed ? "summa_matmul_nt" : "summa_matmul",
                                    {{"group", std::string("row")},
                                     {"group_b", std::string("col")},
                                     {"q", int64_t{q}}}));
  part->executor->SetGroup("row", row_comm.get());
  part->executor->SetGroup("col", col_comm.get());
  for (auto [p, layout, src] : {std::tuple{0, &lx, &X}, std::tuple{1, &lw, &W}}) {
    const Shape local = LocalShape(*layout);
    for (const ElementRun& r : GlobalRuns(local, *layout, 0, NumElements(local))) {
      std::copy(src->begin() + r.global, src->begin() + r.global + r.count,
                part->params->data(p) + r.local);
    }
  }
  // The block's mean weighs 1/q² of the whole's.
  whole->executor->Data<float>(whole->graph.loss_seed())[0] = 1.0f;
  part->executor->Data<float>(part->graph.loss_seed())[0] = 1.0f / static_cast<float>(q * q);
  for (Run* r : {whole.get(), part.get()}) {
    for (int m = 0; m < 2; ++m) {
      r->executor->Forward();
      r->executor->Backward(m);
    }
    RETURN_IF_ERROR(r->executor->status());
  }
  auto compare = [&](const char* what, const float* got, const float* ref, const Layout& layout)
      -> absl::Status {
    const Shape local = LocalShape(layout);
    for (const ElementRun& r : GlobalRuns(local, layout, 0, NumElements(local))) {
      for (int64_t e = 0; e < r.count; ++e) {
        const float a = got[r.local + e], b = ref[r.global + e];
        if (std::fabs(a - b) > 1e-6f + 1e-5f * std::fabs(b)) {
          return absl::InternalError(absl::StrCat(what, " element ", r.global + e, " of rank (", i,
                                                  ", ", j, "): ", a, " vs ", b));
        }
      }
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(compare("y", part->executor->Data<float>(part->y),
                          whole->executor->Data<float>(whole->y), ly));
  RETURN_IF_ERROR(compare("dx", part->params->grad(0), whole->params->grad(0), lx));
  RETURN_IF_ERROR(compare("dw", part->params->grad(1), whole->params->grad(1), lw));
  // Each rank's loss is its block's mean: their mean over the grid is the whole's.
  float mine = part->executor->Data<float>(part->graph.loss())[0];
  RETURN_IF_ERROR(world->AllReduce(&mine, 1, parallel::DType::kF32)->Wait());
  const float expect = whole->executor->Data<float>(whole->graph.loss())[0];
  if (std::fabs(mine / (q * q) - expect) > 1e-6f * std::fabs(expect) + 1e-7f) {
    return absl::InternalError(absl::StrCat("loss ", mine / (q * q), " vs ", expect));
  }
  return absl::OkStatus();
}

TEST_CASE("SUMMA on 2x2 and 3x3 grids equals the whole product, forward and backward") {
  for (bool transposed : {false, true}) {
  for (int q : {2, 3}) {
    CAPTURE(q, transposed);
    parallel::testing::ForkOptions options;
    options.deadline = std::chrono::seconds(90);
    auto exits = parallel::testing::ForkRanks(
        q * q, [&](int r, int n, parallel::TcpStore& s) { return RunGrid(r, n, s, transposed); },
        options);
    INFO(parallel::testing::Failures(exits));
    for (const auto& e : exits) REQUIRE(e.ok());
  }
  }
}

}  // namespace
}  // namespace colossal::graph
