// The rank's GPU from the environment: COLOSSAL_DEVICE first, then LOCAL_RANK, then 0;
// an existing CUDA_VISIBLE_DEVICES list indexed by it; malformed and out-of-range values
// named. (Loading the plugin and making the place need a GPU: tools/gpu/check.sh.)
#include "runtime/worker/device_setup.h"

#include <catch2/catch.hpp>

namespace colossal::worker {
namespace {

std::string Narrow(std::optional<std::string> device, std::optional<std::string> local,
                   std::optional<std::string> visible) {
  absl::StatusOr<std::string> r = NarrowVisibleDevices(device, local, visible);
  return r.ok() ? *r : "error: " + std::string(r.status().message());
}

TEST_CASE("the rank's GPU: COLOSSAL_DEVICE, else LOCAL_RANK, else 0, within CUDA_VISIBLE_DEVICES") {
  CHECK(Narrow(std::nullopt, std::nullopt, std::nullopt) == "0");
  CHECK(Narrow(std::nullopt, "3", std::nullopt) == "3");
  CHECK(Narrow("cuda:5", "3", std::nullopt) == "5");
  CHECK(Narrow("cuda:1", std::nullopt, "4,6, 7") == "6");
  CHECK(Narrow(std::nullopt, "2", "4,6, 7") == "7");
  CHECK(Narrow(std::nullopt, "0", "GPU-8c1a2f3e-aaaa-bbbb-cccc-0123456789ab") ==
        "GPU-8c1a2f3e-aaaa-bbbb-cccc-0123456789ab");
  CHECK(Narrow(std::nullopt, "2", "4,6") ==
        "error: LOCAL_RANK 2 asks for CUDA device 2 but CUDA_VISIBLE_DEVICES='4,6' lists 2 devices");
  CHECK(Narrow("cuda:1", std::nullopt, "0") ==
        "error: COLOSSAL_DEVICE cuda:1 asks for CUDA device 1 but CUDA_VISIBLE_DEVICES='0' lists 1 device");
  CHECK(Narrow("gpu1", std::nullopt, std::nullopt) ==
        "error: COLOSSAL_DEVICE is 'gpu1': expected cuda:<ordinal>, e.g. cuda:0");
  CHECK(Narrow(std::nullopt, "-1", std::nullopt) == "error: LOCAL_RANK is '-1': expected a rank >= 0");
}

TEST_CASE("a cpu job trains on the host place") {
  config::JobSpec spec;
  std::string line;
  absl::StatusOr<memory::Place> place = SetUpDevice(spec, &line);
  REQUIRE(place.ok());
  CHECK(place->on_host());
  CHECK(line == "device: cpu");
}

}  // namespace
}  // namespace colossal::worker
