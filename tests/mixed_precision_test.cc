// Mixed precision end to end (train.precision bf16 / fp16, graph/precision.h):
//   * bf16 and fp16 runs track the fp32 run's losses within what their significands
//     allow, and are not the fp32 run;
//   * a bf16 run under data parallelism with ZeRO equals the bf16 run on one rank (the
//     roundings are per sample, so the layouts agree as tightly as in fp32);
//   * gradients summed in bf16 (parallel.reduce_dtype: bf16, ZeRO 0 and 2) track the
//     fp32 reduction and one rank within bf16's precision, are not the fp32 reduction,
//     and send half its bytes;
//   * fp16's dynamic loss scale: from an absurd initial scale every overflowing step is
//     skipped (the optimizer does not step) and the scale halves, until the gradients fit;
//     a resumed run keeps the scale.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/checkpoint.h"
#include "tests/training_testing.h"

namespace colossal::testing {
namespace {

std::vector<nlohmann::json> StepMetrics(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  REQUIRE(in.good());
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

TEST_CASE("bf16 and fp16 losses track fp32 within their precision") {
  const Result fp32 = Train(Job("adamw", 1, 0, 4, 10, Scratch("fp32")), 1);
  const Result bf16 = Train(Job("adamw", 1, 0, 4, 10, Scratch("bf16")), 1, {"train.precision=bf16"});
  const Result fp16 = Train(Job("adamw", 1, 0, 4, 10, Scratch("fp16")), 1, {"train.precision=fp16"});
  REQUIRE(bf16.losses.size() == 10);
  REQUIRE(fp16.losses.size() == 10);
  bool bf16_differs = false;
  for (size_t s = 0; s < fp32.losses.size(); ++s) {
    INFO("step " << s + 1 << ": fp32 " << fp32.losses[s] << " bf16 " << bf16.losses[s] << " fp16 " << fp16.losses[s]);
    // bf16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3), fp16 11 (2^-12):
    // allow a few roundings' worth, compounded over the steps.
    CHECK(std::fabs(bf16.losses[s] - fp32.losses[s]) <= 1e-2 * fp32.losses[s]);
    CHECK(std::fabs(fp16.losses[s] - fp32.losses[s]) <= 2e-3 * fp32.losses[s]);
    bf16_differs = bf16_differs || bf16.losses[s] != fp32.losses[s];
  }
  CHECK(bf16_differs);
  REQUIRE(bf16.val.size() == fp32.val.size());
  for (size_t i = 0; i < fp32.val.size(); ++i) CHECK(std::fabs(bf16.val[i] - fp32.val[i]) <= 1e-2 * fp32.val[i]);
}

// The layouts' fp32 reductions sum in different orders, as in fp32 (where they agree to
// 1e-5); a last-bit difference in a weight can move its bf16 rounding by a whole bf16
// unit (2^-9 relative), so bf16 layouts agree to bf16's precision, not fp32's: losses
// to 1e-3, weights to 1e-2 of each tensor's rms (the tensor-parallel bounds).
TEST_CASE("bf16 data parallel with ZeRO equals bf16 on one rank within bf16's precision") {
  const Result one = Train(Job("lamb", 1, 0, 4, 8, Scratch("bf16-one")), 1, {"train.precision=bf16"});
  const Result two = Train(Job("lamb", 2, 1, 4, 8, Scratch("bf16-two")), 2, {"train.precision=bf16"});
  REQUIRE(one.losses.size() == two.losses.size());
  for (size_t s = 0; s < one.losses.size(); ++s) {
    INFO("step " << s + 1 << ": " << one.losses[s] << " vs " << two.losses[s]);
    CHECK(std::fabs(one.losses[s] - two.losses[s]) <= 1e-3 * one.losses[s]);
  }
  RequireSameWeights(one.weights, two.weights, Bounds::kTensorParallel);
}

// One rounding of each rank's gradient to bf16 (8-bit significand) and of the sum: the
// bounds of the bf16 layouts above. The data group's bytes: the gradient buckets' sums
// at 2 bytes an element instead of 4 (LAMB's per-tensor norm sums, a few doubles, and
// ZeRO's fp32 parameter all-gathers are unchanged).
TEST_CASE("gradients summed in bf16 track the fp32 reduction within bf16's precision, at half the bytes") {
  const Result one = Train(Job("lamb", 1, 0, 4, 8, Scratch("reduce-one")), 1);
  for (int zero : {0, 2}) {
    INFO("ZeRO " << zero);
    const fs::path a = Scratch("reduce-fp32"), b = Scratch("reduce-bf16");
    const Result fp32 = Train(Job("lamb", 2, zero, 4, 8, a), 2, {"parallel.bucket=4KiB"});
    const Result bf16 = Train(Job("lamb", 2, zero, 4, 8, b), 2, {"parallel.bucket=4KiB", "parallel.reduce_dtype=bf16"});
    REQUIRE(fp32.losses.size() == bf16.losses.size());
    bool differs = false;
    for (size_t s = 0; s < fp32.losses.size(); ++s) {
      INFO("step " << s + 1 << ": " << fp32.losses[s] << " vs " << bf16.losses[s]);
      CHECK(std::fabs(fp32.losses[s] - bf16.losses[s]) <= 1e-3 * fp32.losses[s]);
      differs = differs || fp32.losses[s] != bf16.losses[s];
    }
    RequireSameWeights(fp32.weights, bf16.weights, Bounds::kTensorParallel);
    // And the layout against one rank (no reduction at all), within the same bounds.
    for (size_t s = 0; s < one.losses.size(); ++s) {
      INFO("one rank, step " << s + 1 << ": " << one.losses[s] << " vs " << bf16.losses[s]);
      CHECK(std::fabs(one.losses[s] - bf16.losses[s]) <= 1e-3 * one.losses[s]);
    }
    RequireSameWeights(one.weights, bf16.weights, Bounds::kTensorParallel);
    bool weights_differ = false;
    for (const auto& [name, w] : fp32.weights) weights_differ = weights_differ || w != bf16.weights.at(name);
    CHECK((differs || weights_differ));
    const std::vector<nlohmann::json> ma = StepMetrics(a), mb = StepMetrics(b);
    REQUIRE(ma.size() >= 2);
    REQUIRE(mb.size() == ma.size());
    const double sent_fp32 = ma[1]["comm_bytes"]["data"].get<double>();
    const double sent_bf16 = mb[1]["comm_bytes"]["data"].get<double>();
    INFO("data-group bytes of step 2: fp32 " << sent_fp32 << ", bf16 " << sent_bf16);
    if (zero == 0) {
      CHECK(sent_bf16 / sent_fp32 == Approx(0.5).margin(0.02));
    } else {
      CHECK(sent_bf16 < sent_fp32);  // the reduce-scatter halves, the parameter all-gather does not
    }
  }
}

TEST_CASE("fp16 skips overflowing steps, halving the loss scale, and resumes with it") {
  const fs::path dir = Scratch("fp16-scale");
  Train(Job("adamw", 1, 0, 4, 14, dir), 1,
        {"train.precision=fp16", "train.loss_scale.initial=16777216",  // 2^24
         "train.loss_scale.growth_interval=1000", "train.checkpoint.every=7"});
  const std::vector<nlohmann::json> m = StepMetrics(dir);
  REQUIRE(m.size() == 14);
  double scale = std::ldexp(1.0, 24);
  int64_t skipped = 0;
  for (const nlohmann::json& r : m) {
    INFO(r.dump());
    const int64_t now = r["skipped_steps"].get<int64_t>();
    // A skipped step halves the scale; a step that ran keeps it (no growth this soon).
    if (now == skipped + 1) scale /= 2;
    else REQUIRE(now == skipped);
    skipped = now;
    REQUIRE(r["loss_scale"].get<double>() == Approx(scale).epsilon(1e-8));  // metrics carry 9 digits
    REQUIRE(std::isfinite(r["loss"].get<double>()));
  }
  // fp16's largest value is 65504: 2^24 times the gradients cannot fit (the logits'
  // gradients alone are ~1/64 per token here); smaller scales do.
  std::fprintf(stderr, "fp16 from loss scale 2^24: %lld of 14 steps skipped, scale now %g\n",
               static_cast<long long>(skipped), scale);
  CHECK(skipped >= 3);
  CHECK(skipped < 14);
  // The optimizer stepped only on the steps that ran.
  auto latest = checkpoint::LatestCheckpoint((dir / "checkpoints").string());
  REQUIRE(latest.ok());
  REQUIRE(latest->has_value());
  std::ifstream state(**latest + "/state.json");
  const nlohmann::json s = nlohmann::json::parse(state);
  CHECK(s["optimizer_step"].get<int64_t>() == 14 - skipped);
  CHECK(s["loss_scale"]["scale"].get<double>() == scale);  // state.json keeps every digit
  CHECK(s["loss_scale"]["skipped_steps"].get<int64_t>() == skipped);

  // Resumed from step 7: the same scale and skips as the straight run from there on.
  const fs::path again = Scratch("fp16-scale-again");
  fs::copy(dir, again, fs::copy_options::recursive);
  fs::remove_all(checkpoint::StepDir((again / "checkpoints").string(), 14));
  Train(Job("adamw", 1, 0, 4, 14, again), 1,
        {"train.precision=fp16", "train.loss_scale.initial=16777216", "train.loss_scale.growth_interval=1000",
         "train.checkpoint.every=7"});
  const std::vector<nlohmann::json> resumed = StepMetrics(again);
  REQUIRE(resumed.size() == 21);  // the first run's 14 records, then steps 8..14 again
  for (size_t i = 7; i < 14; ++i) {
    const nlohmann::json& r = resumed[i + 7];
    INFO("step " << i + 1);
    REQUIRE(r["step"].get<int64_t>() == static_cast<int64_t>(i + 1));
    CHECK(r["loss_scale"].get<double>() == Approx(m[i]["loss_scale"].get<double>()).epsilon(1e-8));
    CHECK(r["skipped_steps"].get<int64_t>() == m[i]["skipped_steps"].get<int64_t>());
    CHECK(std::fabs(r["loss"].get<double>() - m[i]["loss"].get<double>()) <= 1e-5 * m[i]["loss"].get<double>());
  }
}

}  // namespace
}  // namespace colossal::testing
