// The device path, held to the host path on a machine without a device: every job below
// runs twice, on the host place and on memory::Place::HostAsDevice() — the same memory
// and kernels, but every host access goes the device way (parameters initialised,
// loaded and checkpointed through host staging, the optimizer's state and LAMB sums
// copied back, data-parallel buffers allocated, copied and zeroed on the place, the
// gradient norm through SumSquaresToHost, the sample from a host copy). Staging changes
// no value, so the losses and the final weights must be bit-identical; and a run
// checkpointed on the device path resumes on the host path (and back) as if never
// stopped.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "memory/place.h"
#include "runtime/checkpoint/checkpoint.h"
#include "tests/training_testing.h"

namespace colossal {
namespace {

using testing::Job;
using testing::Result;
using testing::Scratch;
using testing::Train;
namespace fs = std::filesystem;

void RequireIdentical(const Result& host, const Result& device, const std::string& what) {
  testing::RequireSameRun(host, device, what);
}

TEST_CASE("the device path equals the host path bit for bit: 1 rank, data parallel, ZeRO 1-3, tensor parallel") {
  const memory::Place device = memory::Place::HostAsDevice();
  struct Layout {
    std::string optimizer;
    int data, zero, micro, tensor;
    std::vector<std::string> sets;
  };
  const std::vector<Layout> layouts = {
      {"adamw", 1, 0, 4, 1, {}},
      {"lamb", 1, 0, 4, 1, {"train.precision=bf16"}},
      {"lamb", 2, 0, 2, 1, {"parallel.bucket=8KiB"}},
      {"adamw", 2, 1, 2, 1, {"parallel.bucket=8KiB"}},
      {"lamb", 2, 2, 2, 1, {"parallel.bucket=8KiB"}},
      {"lars", 2, 3, 2, 1, {"parallel.bucket=8KiB"}},
      {"adamw", 1, 0, 4, 2, {}},
  };
  for (const Layout& l : layouts) {
    const int ranks = l.data * l.tensor;
    const std::string what = l.optimizer + " data " + std::to_string(l.data) + " zero " + std::to_string(l.zero) +
                             " tensor " + std::to_string(l.tensor) + (l.sets.empty() ? "" : " " + l.sets[0]);
    const Result host = Train(Job(l.optimizer, l.data, l.zero, l.micro, 6, Scratch("host"), l.tensor), ranks, l.sets);
    const Result dev =
        Train(Job(l.optimizer, l.data, l.zero, l.micro, 6, Scratch("device"), l.tensor), ranks, l.sets, &device);
    RequireIdentical(host, dev, what);
  }
}

TEST_CASE("a checkpoint written on the device path resumes on the host path and back") {
  const memory::Place device = memory::Place::HostAsDevice();
  const Result straight = Train(Job("lamb", 2, 1, 2, 8, Scratch("straight")), 2);
  for (bool first_on_device : {true, false}) {
    INFO("first half on the " << (first_on_device ? "device" : "host") << " path");
    const fs::path dir = Scratch(first_on_device ? "dev-first" : "host-first");
    Train(Job("lamb", 2, 1, 2, 8, dir), 2, {"train.checkpoint.every=4"}, first_on_device ? &device : nullptr);
    fs::remove_all(checkpoint::StepDir((dir / "checkpoints").string(), 8));
    const Result resumed = Train(Job("lamb", 2, 1, 2, 8, dir), 2, {}, first_on_device ? nullptr : &device);
    REQUIRE(resumed.losses.size() == 4);
    for (size_t s = 0; s < 4; ++s) {
      INFO("step " << s + 5);
      CHECK(resumed.losses[s] == straight.losses[s + 4]);
    }
    Result tail = straight;
    tail.losses.assign(straight.losses.begin() + 4, straight.losses.end());
    tail.val.clear();
    Result got = resumed;
    got.val.clear();
    RequireIdentical(tail, got, "resumed");
  }
}

}  // namespace
}  // namespace colossal
