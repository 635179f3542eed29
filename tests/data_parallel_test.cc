// Data parallelism and ZeRO 0–2 against one rank: the per-step losses of a small GPT
// trained with N ranks (threads over the in-process communicator) equal those of one
// rank within 1e-5 relative, and so do the final weights, for AdamW and LAMB, with and
// without gradient accumulation; a sharded checkpoint resumes under another degree and
// ZeRO stage with the same losses. (The same runs across processes over UCX are in
// tests/multiprocess; these keep the logic covered in seconds.)
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "runtime/checkpoint/checkpoint.h"
#include "tests/training_testing.h"

namespace colossal {
namespace {

namespace fs = std::filesystem;

using namespace colossal::testing;  // Job, Train, RequireSame, Scratch

TEST_CASE("data parallel with ZeRO 0, 1, 2 equals one rank (AdamW and LAMB)") {
  for (const std::string opt : {"adamw", "lamb"}) {
    const Result one = Train(Job(opt, 1, 0, 2, 10, Scratch("one-" + opt)), 1);
    REQUIRE(one.losses.size() == 10);
    REQUIRE(one.losses.back() < one.losses.front());
    for (int zero : {0, 1, 2}) {
      // 2 ranks, micro-batch 2: 2 accumulation steps per rank.
      RequireSame(one, Train(Job(opt, 2, zero, 2, 10, Scratch("two")), 2),
                  opt + " 2 ranks zero " + std::to_string(zero));
    }
    // 4 ranks without accumulation (micro-batch 2) and with it (micro-batch 1).
    RequireSame(one, Train(Job(opt, 4, 2, 2, 10, Scratch("four")), 4), opt + " 4 ranks zero 2");
    RequireSame(one, Train(Job(opt, 4, 1, 1, 10, Scratch("four-acc")), 4),
                opt + " 4 ranks zero 1 accumulation");
    // ZeRO 3 with small parameter groups (so gathering, prefetching and releasing happen
    // within every pass), with and without accumulation.
    RequireSame(one, Train(Job(opt, 2, 3, 2, 10, Scratch("z3-two")), 2, {"parallel.bucket=16KiB"}),
                opt + " 2 ranks zero 3");
    RequireSame(one, Train(Job(opt, 4, 3, 1, 10, Scratch("z3-four")), 4, {"parallel.bucket=8KiB"}),
                opt + " 4 ranks zero 3 accumulation");
  }
}

TEST_CASE("a sharded checkpoint resumes under another degree and ZeRO stage") {
  const Result straight = Train(Job("lamb", 1, 0, 2, 8, Scratch("straight")), 1);
  const fs::path dir = Scratch("resharded");
  // 2 ranks, ZeRO 1: checkpoints every 4 steps; the one at step 8 is dropped to resume at 4.
  Train(Job("lamb", 2, 1, 2, 8, dir), 2, {"train.checkpoint.every=4"});
  fs::remove_all(checkpoint::StepDir((dir / "checkpoints").string(), 8));
  REQUIRE(fs::exists(checkpoint::StepDir((dir / "checkpoints").string(), 4) + "/optimizer-1.safetensors"));
  // Resume on 4 ranks with ZeRO 2, on 2 with ZeRO 3, and on 1 rank: steps 5..8 as if
  // never stopped.
  for (auto [ranks, zero] : {std::pair{4, 2}, std::pair{2, 3}, std::pair{1, 0}}) {
    fs::path again = Scratch("again");
    fs::copy(dir, again, fs::copy_options::recursive);
    fs::remove_all(checkpoint::StepDir((again / "checkpoints").string(), 8));
    std::string yaml = Job("lamb", ranks, zero, 2, 8, again);
    Result resumed = Train(yaml, ranks, {"parallel.bucket=16KiB"});
    REQUIRE(resumed.losses.size() == 4);
    for (size_t s = 0; s < 4; ++s) {
      INFO("ranks " << ranks << " step " << s + 5);
      REQUIRE(std::fabs(resumed.losses[s] - straight.losses[s + 4]) <= 1e-5 * straight.losses[s + 4]);
    }
    RequireSameWeights(straight.weights, resumed.weights);
  }
}

}  // namespace
}  // namespace colossal
