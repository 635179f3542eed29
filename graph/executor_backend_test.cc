// The executor on the backend of its stream (executor.h):
//   * a GPT graph run on the reference backend gives the CPU backend's loss and
//     parameter gradients within the composed fp32 tolerance of its kernels, and not
//     bit for bit (the stream's backend reaches the kernels: no op hard-codes a twin);
//   * a single-device GPT (training step, either attention, and decode step) has no op
//     that touches tensor memory on the host, so on a device backend (cuda) Create gets
//     past that check to the backend's memory (absent in this test);
//   * a graph that has such ops (a tensor-parallel GPT) is refused on cuda before
//     anything is allocated, naming every one, so the check works without a GPU;
//   * Write / Read copy whole values in and out, and refuse values without storage and
//     sizes that are not the value's.
#include "graph/executor.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "graph/autodiff.h"
#include "graph/models/gpt.h"
#include "graph/op_registry.h"
#include "kernels/common/tolerance.h"
#include "memory/allocator.h"

namespace colossal::graph {
namespace {

const GptConfig kSmall{/*n_layer=*/2, /*n_head=*/2, /*d_model=*/32, /*seq_len=*/8, /*vocab=*/37};
constexpr int64_t kBatch = 2;

Graph TrainingGpt(bool block_attention) {
  GptConfig cfg = kSmall;
  cfg.block_attention = block_attention;
  auto g = BuildGpt(cfg, kBatch);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  return std::move(*g);
}

// Parameters drawn as precision_test does: layer-norm weights near 1, the rest near 0,
// so activations stay O(1) and the comparison below is relative to O(1) values.
std::unique_ptr<memory::ParamStore> DrawParams(const Graph& g) {
  auto params = std::make_unique<memory::ParamStore>(ParamSpecs(g));
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (int i = 0; i < params->size(); ++i) {
    const std::string& name = params->info(i).name;
    const bool ln_weight = name.find("ln_") != std::string::npos && name.find("weight") != std::string::npos;
    for (int64_t j = 0; j < params->info(i).numel; ++j) params->data(i)[j] = (ln_weight ? 1.0f : 0.0f) + normal(rng);
  }
  return params;
}

struct Result {
  float loss = 0;
  std::vector<std::vector<float>> grads;  // per parameter
};

// One forward and backward on `backend`, every input written and the loss read by copy.
Result TrainOnce(const Graph& g, kernels::Backend backend) {
  std::unique_ptr<memory::ParamStore> params = DrawParams(g);
  auto ex = Executor::Create(&g, params.get(), kernels::Stream{backend});
  REQUIRE(ex.ok());
  const int64_t n = kBatch * kSmall.seq_len;
  std::vector<int32_t> positions(n), ids(n), targets(n);
  FillPositions(positions.data(), kBatch, kSmall.seq_len);
  std::mt19937 tokens(5);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = static_cast<int32_t>(tokens() % kSmall.vocab);
    targets[i] = static_cast<int32_t>(tokens() % kSmall.vocab);
  }
  REQUIRE((*ex)->WriteValue<int32_t>(g.Find("positions"), positions).ok());
  REQUIRE((*ex)->WriteValue<int32_t>(g.Find("ids"), ids).ok());
  REQUIRE((*ex)->WriteValue<int32_t>(g.Find("targets"), targets).ok());
  REQUIRE((*ex)->WriteScalar<float>(g.loss_seed(), 1.0f).ok());
  (*ex)->Forward();
  auto loss = (*ex)->ReadScalar<float>(g.loss());
  REQUIRE(loss.ok());
  (*ex)->Backward(0);
  REQUIRE((*ex)->status().ok());
  Result r;
  r.loss = *loss;
  for (int i = 0; i < params->size(); ++i) {
    r.grads.emplace_back(params->grad(i), params->grad(i) + params->info(i).numel);
  }
  return r;
}

TEST_CASE("a GPT on the reference backend gives the CPU backend's loss and gradients") {
  for (bool block_attention : {false, true}) {
    CAPTURE(block_attention);
    const Graph g = TrainingGpt(block_attention);
    const Result ref = TrainOnce(g, kernels::Backend::kRef);
    const Result cpu = TrainOnce(g, kernels::Backend::kCpu);
    // Every CPU twin is held by the kernel harness to at most Fp32ReductionRtol(k)
    // relative against its reference, k the longest reduction it does; here k <= 4C =
    // 128 (the MLP's GEMMs; the weight gradients reduce over B·T = 16 rows). To first
    // order the errors of the kernels along a path add: the forward passes through
    // about 6 kernels per layer plus the embedding, final layer norm, head and loss
    // (n = 6L + 4 = 16), the backward through as many again. So the loss may differ by
    // n·r and each gradient, relative to its tensor's largest entry, by 2n·r, where
    // r = Fp32ReductionRtol(128) ~ 5.5e-6.
    const double r = kernels::Fp32ReductionRtol(4 * kSmall.d_model);
    const double n = 6.0 * kSmall.n_layer + 4.0;
    CHECK(std::fabs(ref.loss - cpu.loss) <= n * r * std::fabs(ref.loss));
    bool any_differs = ref.loss != cpu.loss;
    REQUIRE(ref.grads.size() == cpu.grads.size());
    for (size_t i = 0; i < ref.grads.size(); ++i) {
      CAPTURE(i);
      double scale = 0, diff = 0;
      for (size_t j = 0; j < ref.grads[i].size(); ++j) {
        scale = std::max(scale, std::fabs(static_cast<double>(ref.grads[i][j])));
        diff = std::max(diff, std::fabs(static_cast<double>(ref.grads[i][j]) - cpu.grads[i][j]));
      }
      CHECK(scale > 0);
      CHECK(diff <= 2 * n * r * scale);
      any_differs = any_differs || diff > 0;
    }
    // Double accumulation and fp32 SIMD never agree to the last bit over a whole model:
    // equal results would mean the reference twins never ran.
    CHECK(any_differs);
  }
}

// The ops of `g`, by name, each once.
std::vector<std::string> OpsOf(const Graph& g) {
  std::vector<std::string> names;
  for (const Node& node : g.nodes()) {
    if (std::find(names.begin(), names.end(), node.op) == names.end()) names.push_back(node.op);
  }
  return names;
}

// The ops of `g` that declare host loops, by name.
std::vector<std::string> HostLoopOps(const Graph& g) {
  std::vector<std::string> names;
  for (const Node& node : g.nodes()) {
    const OpDef* op = FindOp(node.op);
    REQUIRE(op != nullptr);
    if (op->host_loops && std::find(names.begin(), names.end(), node.op) == names.end()) names.push_back(node.op);
  }
  return names;
}

// What Create says on the cuda backend once no op of the graph has host loops: this test
// links no CUDA plugin, so the backend has no memory here (nor on a machine with a GPU).
const char kNoCudaMemory[] =
    "the cuda backend has no memory here: its plugin is not loaded or no device is present";

TEST_CASE("a single-GPU GPT training step and decode step pass the host-loops check on cuda") {
  // Every op of the one-device graphs calls dispatched kernels alone: the loss mean and
  // its backward, the blockwise backward's delta and the decode's cache append included.
  std::vector<std::pair<std::string, Graph>> graphs;
  graphs.emplace_back("train, fused attention", TrainingGpt(/*block_attention=*/false));
  graphs.emplace_back("train, blockwise attention", TrainingGpt(/*block_attention=*/true));
  for (bool block_attention : {false, true}) {
    GptConfig cfg = kSmall;
    cfg.block_attention = block_attention;
    auto decode = BuildGpt(cfg, kBatch, {}, GptPass::kDecode);
    REQUIRE(decode.ok());
    graphs.emplace_back(block_attention ? "decode (blockwise config)" : "decode", std::move(*decode));
  }
  for (const auto& [name, g] : graphs) {
    CAPTURE(name);
    CHECK(HostLoopOps(g).empty());
    memory::ParamStore params(ParamSpecs(g));
    const memory::AllocatorStats before = memory::HostAllocator().stats();
    auto ex = Executor::Create(&g, &params, kernels::Stream{kernels::Backend::kCuda});
    REQUIRE(!ex.ok());
    CHECK(absl::IsFailedPrecondition(ex.status()));
    CHECK(std::string(ex.status().message()) == kNoCudaMemory);
    CHECK(memory::HostAllocator().stats().allocations == before.allocations);
  }
  // The ops this change moved onto kernels are in those graphs (so the check above saw them).
  const std::vector<std::string> ops = OpsOf(graphs[0].second), block_ops = OpsOf(graphs[1].second),
                                 decode_ops = OpsOf(graphs[2].second);
  CHECK(std::find(ops.begin(), ops.end(), "mean") != ops.end());
  CHECK(std::find(ops.begin(), ops.end(), "mean_backward") != ops.end());
  CHECK(std::find(block_ops.begin(), block_ops.end(), "block_attention_backward") != block_ops.end());
  CHECK(std::find(decode_ops.begin(), decode_ops.end(), "attention_decode") != decode_ops.end());
}

TEST_CASE("the cuda backend is refused, before any allocation, for ops with host loops") {
  // A tensor-parallel GPT (1d over 2 ranks: the vocab a multiple of 2): its communication
  // ops still stage tensors on the host.
  GptConfig cfg = kSmall;
  cfg.vocab = 38;
  auto g = BuildGpt(cfg, kBatch, GptTensorParallel{.size = 2});
  INFO(g.status().message());
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  memory::ParamStore params(ParamSpecs(*g));
  const std::vector<std::string> host_ops = HostLoopOps(*g);
  CHECK(std::find(host_ops.begin(), host_ops.end(), "copy_to_group") != host_ops.end());
  CHECK(std::find(host_ops.begin(), host_ops.end(), "reduce_from_group") != host_ops.end());
  const memory::AllocatorStats before = memory::HostAllocator().stats();
  auto ex = Executor::Create(&*g, &params, kernels::Stream{kernels::Backend::kCuda});
  REQUIRE(!ex.ok());
  CHECK(absl::IsFailedPrecondition(ex.status()));
  const std::string message(ex.status().message());
  CAPTURE(message);
  CHECK(message.find("the cuda backend cannot run ops ") == 0);
  CHECK(message.find("they touch tensor memory on the host") != std::string::npos);
  for (const std::string& op : host_ops) {
    CAPTURE(op);
    CHECK(message.find(op) != std::string::npos);
  }
  // Ops that call only dispatched kernels are not named.
  CHECK(message.find("matmul") == std::string::npos);
  CHECK(message.find("layer_norm") == std::string::npos);
  CHECK(message.find("mean") == std::string::npos);
  CHECK(memory::HostAllocator().stats().allocations == before.allocations);
}

// x [4] f32 → gelu → y: every op on dispatched kernels.
Graph GeluGraph() {
  Graph g;
  const int x = g.AddInput("x", {4}, DType::kF32);
  auto y = Apply(g, "gelu", {x}, {}, {"y"});
  REQUIRE(y.ok());
  g.MarkOutput((*y)[0]);
  return g;
}

TEST_CASE("a graph without host loops reaches the device backend's own checks") {
  const Graph g = GeluGraph();
  memory::ParamStore params(ParamSpecs(g));
  auto ex = Executor::Create(&g, &params, kernels::Stream{kernels::Backend::kCuda});
  // This test links no CUDA plugin: the backend has no memory here. Wherever it did,
  // the executor would be made; neither way is it refused for host loops.
  if (!ex.ok()) {
    CHECK(absl::IsFailedPrecondition(ex.status()));
    CHECK(std::string(ex.status().message()).find("host") == std::string::npos);
  }
}

TEST_CASE("Write and Read copy whole values and check their size") {
  const Graph g = GeluGraph();
  memory::ParamStore params(ParamSpecs(g));
  auto made = Executor::Create(&g, &params, kernels::Stream{kernels::Backend::kCpu});
  REQUIRE(made.ok());
  Executor& ex = **made;
  const int x = g.Find("x"), y = g.Find("y");
  const std::vector<float> in = {-1.5f, 0.0f, 0.25f, 3.0f};
  REQUIRE(ex.WriteValue<float>(x, in).ok());
  // Data() is the same storage on a host backend.
  for (int i = 0; i < 4; ++i) CHECK(ex.Data<float>(x)[i] == in[i]);
  std::vector<float> back(4);
  REQUIRE(ex.ReadValue<float>(x, back).ok());
  CHECK(back == in);
  ex.Forward();
  REQUIRE(ex.ReadValue<float>(y, back).ok());
  for (int i = 0; i < 4; ++i) {
    const double v = in[i];
    const double gelu = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    CHECK(std::fabs(back[i] - gelu) <= 1e-5 * (1 + std::fabs(gelu)));
  }
  // A part of a value, or more than it, is a programmer error: the process aborts.
  for (int64_t bytes : {int64_t{8}, int64_t{20}}) {
    CAPTURE(bytes);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      float buf[5] = {};
      (void)ex.Write(x, buf, bytes);
      _exit(0);  // not reached when the check fires
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
  }
}

TEST_CASE("Read and Write refuse a parameter that is not bound") {
  auto g = BuildGpt(kSmall, 1);
  REQUIRE(g.ok());
  memory::ParamStore layout(ParamSpecs(*g), 0, /*allocate=*/false);  // ZeRO 3: bound later
  auto ex = Executor::Create(&*g, &layout, kernels::Stream{kernels::Backend::kCpu});
  REQUIRE(ex.ok());
  const int wpe = g->params()[0];
  std::vector<float> host(static_cast<size_t>(g->value(wpe).numel()));
  const absl::Status read = (*ex)->ReadValue<float>(wpe, host);
  CHECK(absl::IsFailedPrecondition(read));
  CHECK(std::string(read.message()).find(g->value(wpe).name) != std::string::npos);
  CHECK(absl::IsFailedPrecondition((*ex)->WriteValue<float>(wpe, host)));
}

}  // namespace
}  // namespace colossal::graph
