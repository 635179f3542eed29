// Sequence parallelism in the graph: the GPT of 2 and 4 sequence ranks — ring attention
// (zigzag and contiguous layouts) and all-to-all (fused and blockwise attention), alone
// and with 1D tensor parallelism — forked processes over UCX on loopback, against the
// whole model built in the same process: the mean of the ranks' losses is the whole
// model's loss, and every parameter gradient summed over the sequence group (divided by
// its size, as the data-parallel reduction averages) is the whole model's, element by
// element through its tensor layout; the bytes the sequence group sent are the analytic
// volume (graph/comm_volume.h). Also: the layout's runs and positions, and the
// divisibility errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/comm_volume.h"
#include "graph/executor.h"
#include "graph/layout.h"
#include "graph/models/gpt.h"
#include "graph/split_testing.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"
#include "parallel/sequence/sequence_layout.h"

namespace colossal::graph {
namespace {

TEST_CASE("sequence layout: zigzag gives rank s chunks s and 2S-1-s, contiguous one block") {
  const parallel::SequenceLayout z{16, 4, 1, true};
  REQUIRE(z.chunk_len() == 2);
  REQUIRE(z.Runs() == std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {12, 2}});
  std::vector<int32_t> pos(2 * 4);
  parallel::FillPositions(pos.data(), 2, z);
  REQUIRE(pos == std::vector<int32_t>{2, 3, 12, 13, 2, 3, 12, 13});
  const parallel::SequenceLayout c{16, 4, 3, false};
  REQUIRE(c.Runs() == std::vector<std::pair<int64_t, int64_t>>{{12, 4}});
  // Every position exactly once over the ranks.
  for (bool zigzag : {false, true}) {
    std::vector<int> seen(16, 0);
    for (int64_t r = 0; r < 4; ++r) {
      for (const auto& [start, len] : parallel::SequenceLayout{16, 4, r, zigzag}.Runs()) {
        for (int64_t t = 0; t < len; ++t) ++seen[start + t];
      }
    }
    REQUIRE(seen == std::vector<int>(16, 1));
  }
  REQUIRE(std::string(parallel::CheckSequenceLayout({12, 4, 0, true}).message()) ==
          "seq_len 12 is not a multiple of 2 x 4 (two chunks per sequence rank) = 8");
  REQUIRE(parallel::CheckSequenceLayout({12, 4, 0, false}).ok());
}

TEST_CASE("sequence-parallel GPT graphs refuse what they cannot split") {
  const GptConfig cfg{1, 4, 32, 12, 64};
  auto odd = BuildGpt(cfg, 1, {}, GptPass::kTrain, {4, 0, false, true});
  REQUIRE(!odd.ok());
  REQUIRE(std::string(odd.status().message()).find("not a multiple of 2 x 4") != std::string::npos);
  auto heads = BuildGpt({1, 4, 32, 16, 64}, 1, {2, 0}, GptPass::kTrain, {4, 0, true, false});
  REQUIRE(!heads.ok());
  REQUIRE(std::string(heads.status().message()) ==
          "all_to_all sequence parallelism needs the 2 heads of a rank divisible by 4");
  GptTensorParallel two_d;
  two_d.size = 4;
  two_d.two_d = true;
  REQUIRE(!BuildGpt({1, 4, 32, 16, 64}, 4, two_d, GptPass::kTrain, {2, 0}).ok());
  REQUIRE(!BuildGpt({1, 4, 32, 16, 64}, 1, {}, GptPass::kDecode, {2, 0}).ok());
}

struct Built {
  Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<Executor> executor;
};

absl::StatusOr<std::unique_ptr<Built>> Build(const GptConfig& cfg, int64_t batch, const GptTensorParallel& tp,
                                             const GptSequenceParallel& sp) {
  auto owned = std::make_unique<Built>();
  auto g = BuildGpt(cfg, batch, tp, GptPass::kTrain, sp);
  if (!g.ok()) return g.status();
  owned->graph = std::move(*g);
  if (absl::Status s = BuildBackward(owned->graph); !s.ok()) return s;
  owned->params = std::make_unique<memory::ParamStore>(ParamSpecs(owned->graph));
  auto ex = Executor::Create(&owned->graph, owned->params.get(),
                             OverlapCommunication(owned->graph, DefaultSchedule(owned->graph)));
  if (!ex.ok()) return ex.status();
  owned->executor = std::move(*ex);
  return owned;
}

struct Case {
  int sequence = 2;
  int tensor = 1;
  bool all_to_all = false;
  bool zigzag = true;
  bool block = false;  // all_to_all: the blockwise kernel between the exchanges
};

// World rank = s · tensor + t (the mesh's order: sequence outside tensor).
absl::Status RunSequenceParallel(int rank, int size, parallel::TcpStore& store, const Case& c) {
  GptConfig cfg{2, 4, 32, 16, 64};
  cfg.block_attention = c.block;
  const int64_t batch = 2, T = cfg.seq_len;
  parallel::CommOptions options;
  options.timeout = std::chrono::milliseconds(20000);
  auto world = parallel::CreateUcxCommunicator(store, options);
  if (!world.ok()) return world.status();
  const int s = rank / c.tensor, t = rank % c.tensor;
  std::vector<int> seq_ranks, tensor_ranks;
  for (int x = 0; x < c.sequence; ++x) seq_ranks.push_back(x * c.tensor + t);
  for (int x = 0; x < c.tensor; ++x) tensor_ranks.push_back(s * c.tensor + x);
  std::unique_ptr<parallel::Communicator> seq_comm, tensor_comm;
  {
    auto sc = (*world)->Split(seq_ranks);
    if (!sc.ok()) return sc.status();
    seq_comm = std::move(*sc);
  }
  if (c.tensor > 1) {
    auto tc = (*world)->Split(tensor_ranks);
    if (!tc.ok()) return tc.status();
    tensor_comm = std::move(*tc);
  }
  GptConfig whole_cfg = cfg;
  whole_cfg.block_attention = false;
  auto whole = Build(whole_cfg, batch, {}, {});
  if (!whole.ok()) return whole.status();
  const GptSequenceParallel sp{c.sequence, s, c.all_to_all, c.zigzag};
  auto part = Build(cfg, batch, {c.tensor, t}, sp);
  if (!part.ok()) return part.status();
  (*part)->executor->SetGroup("sequence", seq_comm.get());
  if (tensor_comm) (*part)->executor->SetGroup("tensor", tensor_comm.get());
  const parallel::SequenceLayout layout = sp.Layout(T);
  if (c.zigzag != layout.zigzag && !c.all_to_all) return absl::InternalError("layout");

  std::vector<int32_t> ids(batch * T), targets(batch * T);
  for (int64_t i = 0; i < batch * T; ++i) {
    ids[i] = static_cast<int32_t>((i * 37 + 5) % cfg.vocab);
    targets[i] = static_cast<int32_t>((i * 11 + 3) % cfg.vocab);
  }
  const int64_t n = layout.local_len();
  for (Built* b : {whole->get(), part->get()}) {
    Graph& g = b->graph;
    testing::SetGlobalParams(g, *b->params);
    Executor& ex = *b->executor;
    int32_t* in_ids = ex.Data<int32_t>(g.Find("ids"));
    int32_t* in_targets = ex.Data<int32_t>(g.Find("targets"));
    int32_t* in_pos = ex.Data<int32_t>(g.Find("positions"));
    if (b == whole->get()) {
      std::copy(ids.begin(), ids.end(), in_ids);
      std::copy(targets.begin(), targets.end(), in_targets);
      FillPositions(in_pos, batch, T);
    } else {
      parallel::FillPositions(in_pos, batch, layout);
      for (int64_t row = 0; row < batch; ++row) {
        for (int64_t j = 0; j < n; ++j) {
          const int32_t p = in_pos[row * n + j];
          in_ids[row * n + j] = ids[row * T + p];
          in_targets[row * n + j] = targets[row * T + p];
        }
      }
    }
    ex.Data<float>(g.loss_seed())[0] = 1.0f;
    // Two micro-steps: the second accumulates into the parameter gradients.
    for (int m = 0; m < 2; ++m) {
      ex.Forward();
      ex.Backward(m);
    }
    if (!ex.status().ok()) return ex.status();
  }
  // What the sequence group carried: the analytic volume of two forward + backward runs.
  const int64_t analytic = CommBytesPerRun((*part)->graph, {{"sequence", c.sequence}, {"tensor", c.tensor}})["sequence"];
  if (seq_comm->bytes_sent() != 2 * analytic || analytic == 0) {
    return absl::InternalError(absl::StrCat("the sequence group sent ", seq_comm->bytes_sent(), " bytes, analytic 2 x ",
                                            analytic));
  }
  const float loss = (*whole)->executor->Data<float>((*whole)->graph.loss())[0];
  float sp_loss = (*part)->executor->Data<float>((*part)->graph.loss())[0];
  if (absl::Status st = seq_comm->AllReduce(&sp_loss, 1, parallel::DType::kF32)->Wait(); !st.ok()) return st;
  sp_loss /= static_cast<float>(c.sequence);
  if (std::fabs(loss - sp_loss) > 1e-5f * std::fabs(loss)) {
    return absl::InternalError(absl::StrCat("loss ", sp_loss, " but the whole model's is ", loss));
  }
  // The gradients summed over the sequence group, averaged as the data-parallel reduction does.
  const Graph& g = (*part)->graph;
  for (size_t i = 0; i < g.params().size(); ++i) {
    float* got = (*part)->params->grad(static_cast<int>(i));
    const int64_t n = g.value(g.params()[i]).numel();
    if (absl::Status st = seq_comm->AllReduce(got, n, parallel::DType::kF32)->Wait(); !st.ok()) return st;
  }
  return testing::SameGradsAsWhole(g, *(*part)->params, *(*whole)->params, 1.0f / static_cast<float>(c.sequence));
}

void Check(const Case& c) {
  auto exits = parallel::testing::ForkRanks(c.sequence * c.tensor, [c](int r, int n, parallel::TcpStore& s) {
    return RunSequenceParallel(r, n, s, c);
  });
  INFO(parallel::testing::Failures(exits));
  for (const auto& e : exits) REQUIRE(e.ok());
}

TEST_CASE("ring attention GPT over 2 and 4 sequence ranks (zigzag) equals the whole model") {
  for (int size : {2, 4}) {
    CAPTURE(size);
    Check({size, 1, false, true});
  }
}

TEST_CASE("ring attention GPT with contiguous chunks equals the whole model") { Check({2, 1, false, false}); }

TEST_CASE("all-to-all GPT over 2 and 4 sequence ranks, fused and blockwise, equals the whole model") {
  for (int size : {2, 4}) {
    for (bool block : {false, true}) {
      CAPTURE(size, block);
      Check({size, 1, true, false, block});
    }
  }
}

TEST_CASE("sequence 2 x tensor 2 (ring and all-to-all) equals the whole model") {
  for (bool a2a : {false, true}) {
    CAPTURE(a2a);
    Check({2, 2, a2a, !a2a});
  }
}

}  // namespace
}  // namespace colossal::graph
