// ParamStore layout: aligned offsets, no overlap, zeroed gradients, lookup by name.
#include <catch2/catch.hpp>

#include <cstdint>

#include "memory/param_store.h"

namespace colossal::memory {
namespace {

TEST_CASE("param store lays tensors out aligned and disjoint") {
  ParamStore store({{"a", {3, 5}}, {"b", {7}}, {"c", {2, 2, 2}}});
  REQUIRE(store.size() == 3);
  REQUIRE(store.num_params() == 15 + 7 + 8);
  int64_t end = 0;
  for (int i = 0; i < store.size(); ++i) {
    const ParamInfo& info = store.info(i);
    REQUIRE(info.offset >= end);
    REQUIRE(reinterpret_cast<uintptr_t>(store.data(i)) % 64 == 0);
    REQUIRE(reinterpret_cast<uintptr_t>(store.grad(i)) % 64 == 0);
    end = info.offset + info.numel;
    for (int64_t j = 0; j < info.numel; ++j) REQUIRE(store.grad(i)[j] == 0.0f);
  }
  REQUIRE(end <= store.flat_numel());
  REQUIRE(store.Find("b") == 1);
  REQUIRE(store.Find("zz") == -1);
  REQUIRE(store.info(2).numel == 8);
}

}  // namespace
}  // namespace colossal::memory
