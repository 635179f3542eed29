// Tensor parallelism 1d (Megatron) against one rank: the per-step losses of a small GPT
// trained with its matrices and vocabulary split over 2 and 4 ranks (threads over the
// in-process communicator) equal those of one rank within 1e-5 relative, and so do the
// final weights (consolidated from the checkpoint's pieces; bounds in
// training_testing.h), for AdamW and LAMB with
// gradient accumulation, with and without Megatron sequence parallelism; data 2 x
// tensor 2 with ZeRO 0, 1, 3 (and 2 with sequence parallelism) too; and a checkpoint
// written under one (data, tensor, ZeRO) layout resumes under others with the same
// losses. (The same runs across processes over UCX: tests/tp_multiprocess_test.sh.)
#include <catch2/catch.hpp>

#include <cmath>
#include <algorithm>
#include <filesystem>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/worker/model.h"
#include "tests/training_testing.h"

namespace colossal {
namespace {

namespace fs = std::filesystem;
using namespace colossal::testing;  // Job, Train, RequireSame, Scratch

constexpr int kHeads = 4;

TEST_CASE("tensor parallel 1d over 2 and 4 ranks equals one rank (AdamW and LAMB)") {
  for (const std::string opt : {"adamw", "lamb"}) {
    const Result one = Train(Job(opt, 1, 0, 2, 10, Scratch("tp-one-" + opt), 1, kHeads), 1);
    REQUIRE(one.losses.size() == 10);
    REQUIRE(one.losses.back() < one.losses.front());
    // Micro-batch 2 of 8: 4 accumulation steps.
    RequireSame(one, Train(Job(opt, 1, 0, 2, 10, Scratch("tp2"), 2, kHeads), 2), opt + " tp 2", Bounds::kTensorParallel);
    RequireSame(one, Train(Job(opt, 1, 0, 4, 10, Scratch("tp4"), 4, kHeads), 4), opt + " tp 4", Bounds::kTensorParallel);
    // Megatron sequence parallelism: the layer-norm regions split over the tokens.
    RequireSame(one, Train(Job(opt, 1, 0, 2, 10, Scratch("tp2-sp"), 2, kHeads, true), 2),
                opt + " tp 2 sequence parallel", Bounds::kTensorParallel);
    RequireSame(one, Train(Job(opt, 1, 0, 4, 10, Scratch("tp4-sp"), 4, kHeads, true), 4),
                opt + " tp 4 sequence parallel", Bounds::kTensorParallel);
  }
}

TEST_CASE("tensor parallel 2d on a 2x2 grid, alone and beside data 2 (ZeRO 1), equals one rank") {
  for (const std::string opt : {"adamw", "lamb"}) {
    const Result one = Train(Job(opt, 1, 0, 2, 10, Scratch("2d-one-" + opt), 1, kHeads), 1);
    RequireSame(one, Train(Job(opt, 1, 0, 2, 10, Scratch("2d"), 4, kHeads, false, "2d"), 4),
                opt + " tp 4 (2d)", Bounds::kTensorParallel);
    RequireSame(one,
                Train(Job(opt, 2, 1, 2, 10, Scratch("2d-dp"), 4, kHeads, false, "2d"), 8,
                      {"parallel.bucket=16KiB"}),
                opt + " data 2 x tp 4 (2d) zero 1", Bounds::kTensorParallel);
  }
}

TEST_CASE("tensor parallel 2.5d on a 2x2x2 grid equals one rank") {
  for (const std::string opt : {"adamw", "lamb"}) {
    // Micro-batch 4 (a multiple of depth x q): 2 accumulation steps.
    const Result one = Train(Job(opt, 1, 0, 4, 10, Scratch("25d-one-" + opt), 1, kHeads), 1);
    RequireSame(one, Train(Job(opt, 1, 0, 4, 10, Scratch("25d"), 8, kHeads, false, "2.5d, depth: 2"), 8),
                opt + " tp 8 (2.5d, q 2, depth 2)", Bounds::kTensorParallel);
  }
}

TEST_CASE("tensor parallel 3d on a 2x2x2 cube equals one rank") {
  for (const std::string opt : {"adamw", "lamb"}) {
    // Micro-batch 4 (a multiple of q²): 2 accumulation steps.
    const Result one = Train(Job(opt, 1, 0, 4, 10, Scratch("3d-one-" + opt), 1, kHeads), 1);
    RequireSame(one, Train(Job(opt, 1, 0, 4, 10, Scratch("3d"), 8, kHeads, false, "3d"), 8),
                opt + " tp 8 (3d, q 2)", Bounds::kTensorParallel);
  }
}

TEST_CASE("data 2 x tensor 2 with ZeRO 0, 1 and 3 equals one rank") {
  for (const std::string opt : {"adamw", "lamb"}) {
    const Result one = Train(Job(opt, 1, 0, 2, 10, Scratch("dt-one-" + opt), 1, kHeads), 1);
    for (int zero : {0, 1, 3}) {
      RequireSame(one,
                  Train(Job(opt, 2, zero, 2, 10, Scratch("dt"), 2, kHeads), 4,
                        {"parallel.bucket=16KiB"}),
                  opt + " data 2 x tensor 2 zero " + std::to_string(zero), Bounds::kTensorParallel);
    }
    RequireSame(one,
                Train(Job(opt, 2, 2, 2, 10, Scratch("dt-sp"), 2, kHeads, true), 4,
                      {"parallel.bucket=16KiB"}),
                opt + " data 2 x tensor 2 (sequence parallel) zero 2", Bounds::kTensorParallel);
  }
}

TEST_CASE("a tensor-parallel checkpoint resumes under other layouts, and one rank's under tp") {
  const Result straight = Train(Job("lamb", 1, 0, 2, 8, Scratch("tp-straight"), 1, kHeads), 1);
  const fs::path dir = Scratch("tp-written");
  // tensor 4: checkpoints every 4 steps; the one at step 8 is dropped to resume at 4.
  Train(Job("lamb", 1, 0, 2, 8, dir, 4, kHeads), 4, {"train.checkpoint.every=4"});
  const std::string step4 = checkpoint::StepDir((dir / "checkpoints").string(), 4);
  REQUIRE(fs::exists(step4 + "/model-3.safetensors"));
  // Resume under tensor 2, data 2 x ZeRO 2, data 2 x tensor 2 x ZeRO 1, and one rank.
  struct Layout {
    int data, tensor, zero;
  };
  for (Layout l : {Layout{1, 2, 0}, Layout{2, 1, 2}, Layout{2, 2, 1}, Layout{1, 1, 0}}) {
    fs::path again = Scratch("tp-again");
    fs::copy(dir, again, fs::copy_options::recursive);
    fs::remove_all(checkpoint::StepDir((again / "checkpoints").string(), 8));
    Result resumed = Train(Job("lamb", l.data, l.zero, 2, 8, again, l.tensor, kHeads),
                           l.data * l.tensor, {"parallel.bucket=16KiB"});
    REQUIRE(resumed.losses.size() == 4);
    for (size_t s = 0; s < 4; ++s) {
      INFO("data " << l.data << " tensor " << l.tensor << " zero " << l.zero << " step " << s + 5);
      REQUIRE(std::fabs(resumed.losses[s] - straight.losses[s + 4]) <= 1e-5 * straight.losses[s + 4]);
    }
    RequireSameWeights(straight.weights, resumed.weights, Bounds::kTensorParallel);
  }
  // A 2d checkpoint (tensor 4 on a 2x2 grid) resumes under tensor 2 (1d) and one rank.
  const fs::path grid = Scratch("tp-2d-written");
  Train(Job("lamb", 1, 0, 2, 8, grid, 4, kHeads, false, "2d"), 4, {"train.checkpoint.every=4"});
  for (int to : {2, 1}) {
    fs::path again = Scratch("tp-2d-again");
    fs::copy(grid, again, fs::copy_options::recursive);
    fs::remove_all(checkpoint::StepDir((again / "checkpoints").string(), 8));
    Result resumed = Train(Job("lamb", 1, 0, 2, 8, again, to, kHeads), to);
    REQUIRE(resumed.losses.size() == 4);
    for (size_t s = 0; s < 4; ++s) {
      INFO("2d -> tensor " << to << " step " << s + 5);
      REQUIRE(std::fabs(resumed.losses[s] - straight.losses[s + 4]) <= 1e-5 * straight.losses[s + 4]);
    }
    RequireSameWeights(straight.weights, resumed.weights, Bounds::kTensorParallel);
  }
  // A single rank's checkpoint (whole tensors) resumes under tensor 4.
  const fs::path whole = Scratch("tp-whole");
  Train(Job("lamb", 1, 0, 2, 8, whole, 1, kHeads), 1, {"train.checkpoint.every=4"});
  fs::remove_all(checkpoint::StepDir((whole / "checkpoints").string(), 8));
  Result split = Train(Job("lamb", 1, 0, 2, 8, whole, 4, kHeads), 4);
  REQUIRE(split.losses.size() == 4);
  for (size_t s = 0; s < 4; ++s) {
    REQUIRE(std::fabs(split.losses[s] - straight.losses[s + 4]) <= 1e-5 * straight.losses[s + 4]);
  }
  RequireSameWeights(straight.weights, split.weights, Bounds::kTensorParallel);
}

TEST_CASE("a checkpoint whose pieces do not tile a tensor is refused, naming the tensor") {
  const fs::path dir = Scratch("tp-torn");
  Train(Job("adamw", 1, 0, 2, 4, dir, 2, kHeads), 2);
  const std::string step = checkpoint::StepDir((dir / "checkpoints").string(), 4);
  REQUIRE(fs::remove(step + "/model-1.safetensors"));  // tensor rank 1's parts
  auto spec = config::ParseJobSpec(Job("adamw", 1, 0, 2, 8, dir, 1, kHeads), "torn.yaml");
  REQUIRE(spec.ok());
  worker::TrainOptions options;
  options.threads = 1;
  options.progress = 0;
  options.print_sample = false;
  auto result = worker::Train(*spec, options);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(result.status().message());
  INFO(message);
  CHECK(message.find(step + ": tensor 'wte.weight' does not match the model's [256, 32] (its "
                     "pieces do not tile it, or the shape differs)") != std::string::npos);
}

TEST_CASE("a tensor-parallel checkpoint loads whole as model.init_from (and colossal generate)") {
  const fs::path dir = Scratch("tp-init-from");
  const Result written = Train(Job("adamw", 1, 0, 2, 4, dir, 4, kHeads, false, "2d"), 4);
  // LoadParams reads the pieces of every rank's file into whole tensors.
  auto spec = config::ParseJobSpec(Job("adamw", 1, 0, 2, 4, Scratch("tp-init-into"), 1, kHeads), "x.yaml");
  REQUIRE(spec.ok());
  auto model = worker::BuildModel(*spec, 2);
  REQUIRE(model.ok());
  memory::ParamStore& params = *(*model)->params;
  absl::Status loaded = worker::LoadParams(params, (dir / "checkpoints").string());
  INFO(loaded.message());
  REQUIRE(loaded.ok());
  REQUIRE(written.weights.size() == static_cast<size_t>(params.size()));
  for (int i = 0; i < params.size(); ++i) {
    const std::vector<float>& w = written.weights.at(params.info(i).name);
    REQUIRE(std::equal(w.begin(), w.end(), params.data(i)));
  }
}

}  // namespace
}  // namespace colossal
