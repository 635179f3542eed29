// Every kernel's dispatch table has its specification (the reference twin) and a CPU
// twin for fp32, so the per-op tests that loop over Twins() compare something real.
#include <catch2/catch.hpp>

#include "kernels/common/dispatch.h"
#include "kernels/embedding/embedding.h"
#include "kernels/testing/twins.h"

namespace colossal::kernels {
namespace {

TEST_CASE("every dispatch table has a reference and a CPU fp32 twin") {
  const std::vector<DispatchInfo> tables = ListDispatchTables();
  REQUIRE(tables.size() >= 10);
  for (const DispatchInfo& t : tables) {
    INFO(t.name);
    CHECK(t.registered[static_cast<int>(Backend::kRef)][static_cast<int>(DType::kF32)]);
    CHECK(t.registered[static_cast<int>(Backend::kCpu)][static_cast<int>(DType::kF32)]);
  }
  CHECK(testing::Twins(EmbeddingForwardTable()) == std::vector<Backend>{Backend::kRef, Backend::kCpu});
}

}  // namespace
}  // namespace colossal::kernels
