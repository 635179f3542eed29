// Mixed precision (graph/precision.h): a GPT whose matmuls compute in bf16 / fp16.
//   * Each marked GEMM computes exactly the rounded product: the first layer's QKV
//     projection output against a double GEMM of its operands rounded by the cast
//     reference, in fp32's tolerance; and the fp32 graph's output is outside it.
//   * The marks reach the backward GEMMs (autodiff copies the attributes).
//   * The loss and every gradient track the fp32 graph's within what 8 (bf16) or 11
//     (fp16) significant bits allow, and the reference and CPU backends agree.
#include "graph/precision.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/models/gpt.h"
#include "kernels/convert/convert.h"
#include "kernels/matmul/matmul.h"
#include "kernels/testing/kernel_testing.h"

namespace colossal::graph {
namespace {

const GptConfig kSmall{/*n_layer=*/2, /*n_head=*/2, /*d_model=*/32, /*seq_len=*/8, /*vocab=*/37};
constexpr int64_t kBatch = 2;

struct Run {
  Graph graph;
  std::unique_ptr<memory::ParamStore> params;
  std::unique_ptr<Executor> ex;
  float loss = 0;
};

Run Train(DType compute, kernels::Backend backend) {
  Run r;
  auto g = BuildGpt(kSmall, kBatch);
  REQUIRE(g.ok());
  r.graph = std::move(*g);
  auto marked = SetComputePrecision(r.graph, compute);
  REQUIRE(marked.ok());
  if (compute != DType::kF32) CHECK(*marked == 4 * kSmall.n_layer + 1);  // 4 per block + the head
  REQUIRE(BuildBackward(r.graph).ok());
  r.params = std::make_unique<memory::ParamStore>(ParamSpecs(r.graph));
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (int i = 0; i < r.params->size(); ++i) {
    const bool ln_weight = r.params->info(i).name.find("ln_") != std::string::npos &&
                           r.params->info(i).name.find("weight") != std::string::npos;
    for (int64_t j = 0; j < r.params->info(i).numel; ++j) r.params->data(i)[j] = (ln_weight ? 1.0f : 0.0f) + normal(rng);
  }
  auto ex = Executor::Create(&r.graph, r.params.get(), kernels::Stream{backend});
  REQUIRE(ex.ok());
  r.ex = std::move(*ex);
  FillPositions(r.ex->Data<int32_t>(r.graph.Find("positions")), kBatch, kSmall.seq_len);
  std::mt19937 tokens(5);
  int32_t* ids = r.ex->Data<int32_t>(r.graph.Find("ids"));
  int32_t* targets = r.ex->Data<int32_t>(r.graph.Find("targets"));
  for (int64_t i = 0; i < kBatch * kSmall.seq_len; ++i) {
    ids[i] = static_cast<int32_t>(tokens() % kSmall.vocab);
    targets[i] = static_cast<int32_t>(tokens() % kSmall.vocab);
  }
  r.ex->Data<float>(r.graph.loss_seed())[0] = 1.0f;
  r.ex->Forward();
  r.loss = r.ex->Data<float>(r.graph.loss())[0];
  r.ex->Backward(0);
  return r;
}

const Node& FirstMatmul(const Graph& g) {
  for (const Node& n : g.nodes()) {
    if (n.op == "matmul") return n;
  }
  FAIL("no matmul");
  return g.nodes()[0];
}

// The node's output against a double GEMM of its operands rounded to `dtype`.
kernels::testing::CloseResult CheckRoundedGemm(Run& r, DType dtype) {
  const Node& n = FirstMatmul(r.graph);
  const Value& x = r.graph.value(n.inputs[0]);
  const Value& w = r.graph.value(n.inputs[1]);
  const int64_t k = x.shape.back(), m = x.numel() / k, cols = w.shape[1];
  auto rounded = [&](const float* v, int64_t count) {
    std::vector<uint16_t> low(count);
    std::vector<float> wide(count);
    kernels::CastTo16Ref(dtype, v, low.data(), count);
    kernels::Cast16ToF32Ref(dtype, low.data(), wide.data(), count);
    return std::vector<double>(wide.begin(), wide.end());
  };
  const std::vector<double> xs = rounded(r.ex->Data<float>(n.inputs[0]), x.numel());
  const std::vector<double> ws = rounded(r.ex->Data<float>(n.inputs[1]), w.numel());
  const float* bias = r.ex->Data<float>(n.inputs[2]);
  std::vector<double> expected(m * cols);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double s = bias[j];
      for (int64_t l = 0; l < k; ++l) s += xs[i * k + l] * ws[l * cols + j];
      expected[i * cols + j] = s;
    }
  }
  const kernels::Tolerance tol = kernels::MatmulTolerance(k, 1.0f);
  return kernels::testing::AllClose(r.ex->Data<float>(n.outputs[0]), expected.data(), m * cols, tol.atol, tol.rtol);
}

TEST_CASE("a bf16 / fp16 matmul node computes the GEMM of its operands rounded") {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    CAPTURE(std::string(kernels::DTypeName(dtype)));
    Run low = Train(dtype, kernels::Backend::kCpu);
    const auto r = CheckRoundedGemm(low, dtype);
    INFO(r.message);
    CHECK(r.ok);
    // The backward GEMMs carry the mark too.
    int marked = 0;
    for (const Node& n : low.graph.nodes()) {
      if ((n.op == "matmul_grad_input" || n.op == "matmul_grad_weight") && n.attrs.count("compute")) ++marked;
    }
    CHECK(marked >= 2 * (4 * kSmall.n_layer + 1) - 1);  // every GEMM; the embedding lookup needs no dx
    // The fp32 graph does not compute that (the rounding is real).
    Run full = Train(DType::kF32, kernels::Backend::kCpu);
    CHECK(!CheckRoundedGemm(full, dtype).ok);
  }
}

TEST_CASE("bf16 / fp16 losses and gradients track fp32 within the low type's precision") {
  Run full = Train(DType::kF32, kernels::Backend::kCpu);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    CAPTURE(std::string(kernels::DTypeName(dtype)));
    // Relative precision of one rounding: 2^-9 (bf16), 2^-12 (fp16); a few roundings
    // compound through two blocks: allow 16 units in the loss, 64 units of the gradient's
    // scale in each gradient.
    const double unit = dtype == DType::kBF16 ? std::ldexp(1.0, -9) : std::ldexp(1.0, -12);
    Run low = Train(dtype, kernels::Backend::kCpu);
    CHECK(std::fabs(low.loss - full.loss) <= 16 * unit * std::fabs(full.loss));
    CHECK(low.loss != full.loss);
    for (int i = 0; i < full.params->size(); ++i) {
      CAPTURE(full.params->info(i).name);
      const int64_t n = full.params->info(i).numel;
      double scale = 0, diff = 0;
      for (int64_t j = 0; j < n; ++j) {
        scale = std::max(scale, std::fabs(static_cast<double>(full.params->grad(i)[j])));
        diff = std::max(diff, std::fabs(static_cast<double>(low.params->grad(i)[j]) - full.params->grad(i)[j]));
      }
      CHECK(diff <= 64 * unit * scale);
    }
    // The reference backend (its own casts and double GEMM) agrees with the CPU's.
    Run ref = Train(dtype, kernels::Backend::kRef);
    CHECK(std::fabs(ref.loss - low.loss) <= 1e-5 * std::fabs(low.loss));
  }
}

TEST_CASE("SetComputePrecision refuses a graph that already has its backward") {
  auto g = BuildGpt(kSmall, 1);
  REQUIRE(g.ok());
  REQUIRE(BuildBackward(*g).ok());
  auto marked = SetComputePrecision(*g, DType::kBF16);
  REQUIRE(!marked.ok());
  CHECK(std::string(marked.status().message()).find("before autodiff") != std::string::npos);
  CHECK(*SetComputePrecision(*g, DType::kF32) == 0);
}

}  // namespace
}  // namespace colossal::graph
