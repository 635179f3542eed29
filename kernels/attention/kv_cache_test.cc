// KV-cache append: every twin (the harness) bit for bit against the reference, for one
// sequence without packed queries and several with, at the first, a middle and the last
// cache row, with odd channel counts; every other cache row is left as it was; and the
// reference against hand-written values.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention/kv_cache.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::ArgAs;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

void CheckAppend(int64_t batch, int64_t max_len, int64_t C, int64_t pos, bool pack_q, uint64_t seed) {
  CAPTURE(batch, max_len, C, pos, pack_q);
  const auto qkv = Random<float>(batch * 3 * C, seed);
  const auto k0 = Random<float>(batch * max_len * C, seed + 1), v0 = Random<float>(batch * max_len * C, seed + 2);
  const auto q0 = Random<float>(batch * C, seed + 3);
  std::vector<float> k_ref = k0, v_ref = v0, q_ref = q0;
  KvCacheAppendRef(qkv.data(), pos, k_ref.data(), v_ref.data(), pack_q ? q_ref.data() : nullptr, batch, max_len, C);
  // Independently of the reference: row pos of each sequence changed, nothing else did.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < max_len; ++t) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t at = (b * max_len + t) * C + c;
        REQUIRE(k_ref[at] == (t == pos ? qkv[b * 3 * C + C + c] : k0[at]));
        REQUIRE(v_ref[at] == (t == pos ? qkv[b * 3 * C + 2 * C + c] : v0[at]));
      }
    }
    for (int64_t c = 0; c < C; ++c) REQUIRE(q_ref[b * C + c] == (pack_q ? qkv[b * 3 * C + c] : q0[b * C + c]));
  }

  TwinCase tc("kv_cache_append B=" + std::to_string(batch) + " pos=" + std::to_string(pos));
  const int iqkv = tc.In(qkv), ip = tc.InI32({static_cast<int32_t>(pos)});
  const int ok = tc.OutExact("k_cache", k0, k_ref), ov = tc.OutExact("v_cache", v0, v_ref);
  const int oq = tc.OutExact("q", q0, q_ref);
  RequireNoFailures(tc.Run(KvCacheAppendTable(), [&](KvCacheAppendFn* fn, Stream st, const auto& x) {
    fn(ArgAs<float>(x, iqkv), ArgAs<int32_t>(x, ip), ArgAs<float>(x, ok), ArgAs<float>(x, ov),
       pack_q ? ArgAs<float>(x, oq) : nullptr, batch, max_len, C, st);
  }));
  REQUIRE(tc.ran().size() >= 2);
}

TEST_CASE("kv_cache_append: every twin equals the reference bit for bit (the harness)") {
  uint64_t seed = 40;
  for (int64_t pos : {0, 5, 16}) {
    CheckAppend(1, 17, 12, pos, /*pack_q=*/false, seed += 10);
    CheckAppend(1, 17, 12, pos, /*pack_q=*/true, seed += 10);
    CheckAppend(3, 17, 7, pos, /*pack_q=*/true, seed += 10);
  }
  CheckAppend(4, 1, 768, 0, /*pack_q=*/true, seed += 10);
  CheckAppend(2, 1024, 768, 1023, /*pack_q=*/true, seed += 10);
}

TEST_CASE("kv_cache_append reference: hand-written values") {
  // B = 2, C = 1, max_len = 2: qkv rows (q, k, v) = (1, 2, 3) and (4, 5, 6) at position 1.
  const std::vector<double> qkv = {1, 2, 3, 4, 5, 6};
  std::vector<double> k = {-1, -1, -1, -1}, v = k, q = {0, 0};
  KvCacheAppendRef(qkv.data(), 1, k.data(), v.data(), q.data(), 2, 2, 1);
  REQUIRE(k == std::vector<double>{-1, 2, -1, 5});
  REQUIRE(v == std::vector<double>{-1, 3, -1, 6});
  REQUIRE(q == std::vector<double>{1, 4});
}

}  // namespace
}  // namespace colossal::kernels
