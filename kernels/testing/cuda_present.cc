// Linked into every gpu-tagged kernel test: the test fails, rather than skipping its CUDA
// twins, when the process sees no CUDA device; so `bazel test --config=gpu` on a GPU node
// proves the twins ran.
#include <catch2/catch.hpp>

#include "kernels/common/backend_memory.h"

namespace colossal::kernels {
namespace {

TEST_CASE("a CUDA device is present, so the harness runs the cuda twins") {
  REQUIRE(FindBackendMemory(Backend::kCuda) != nullptr);
}

}  // namespace
}  // namespace colossal::kernels
