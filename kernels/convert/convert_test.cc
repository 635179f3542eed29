// Casts: every twin bit-identical to the value-arithmetic reference over random values
// across the whole range and every special case (ties both ways, the largest finite
// values and the overflow boundary, fp16 subnormals and the underflow boundary, ±0, ±inf,
// NaN); round trips exact for every 16-bit pattern; the reference against known
// encodings.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/common/half.h"
#include "kernels/convert/convert.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::ArgAs;
using testing::RequireNoFailures;
using testing::TwinCase;

float Bits(uint32_t u) { return std::bit_cast<float>(u); }

std::vector<float> Specials() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 1.0f, -1.0f,
                          65504.0f, 65519.996f, 65520.0f, -65520.0f, 65536.0f, 1e-8f, 5.9604645e-08f,
                          2.9802322e-08f, 2.9802326e-08f, 6.1035156e-05f, 6.1035153e-05f, 3.4e38f,
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(), 1e-40f};
  // bf16 ties: 1 + 2^-8 (tie, rounds to even 1), 1 + 3·2^-8 (tie, rounds up), and one ulp
  // of fp32 either side of each.
  for (uint32_t base : {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7f8000u}) {
    for (int d : {-1, 0, 1}) v.push_back(Bits(base + d));
  }
  // fp16 ties: 1 + 2^-11 (to even), 1 + 3·2^-11 (up); subnormal ties 0.5 and 1.5 units of 2^-24.
  for (float t : {1.00048828125f, 1.00146484375f, 2.98023224e-08f, 8.94069672e-08f}) {
    v.push_back(t);
    v.push_back(std::nextafter(t, 0.0f));
    v.push_back(std::nextafter(t, 10.0f));
    v.push_back(-t);
  }
  return v;
}

std::vector<float> Values(int64_t n, uint64_t seed) {
  std::vector<float> v = Specials();
  // Random magnitudes over the whole exponent range, both signs.
  const auto mant = testing::Random<float>(n, seed, 1.0, 2.0);
  const auto exps = testing::Random<float>(n, seed + 1, -140.0, 130.0);
  for (int64_t i = 0; i < n; ++i) {
    float x = std::ldexp(mant[i], static_cast<int>(exps[i]));
    if (i % 2) x = -x;
    v.push_back(x);
  }
  // And the range GEMM operands live in.
  for (float x : testing::Random<float>(n, seed + 2, -70000.0, 70000.0)) v.push_back(x);
  return v;
}

TEST_CASE("casts to 16 bits: every twin is bit-identical to the reference") {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      CAPTURE(DTypeName(dtype), n);
      const std::vector<float> x = n == 0 ? std::vector<float>{} : Values(n, 7 + n);
      std::vector<uint16_t> ref(x.size());
      CastTo16Ref(dtype, x.data(), ref.data(), static_cast<int64_t>(x.size()));
      TwinCase c(std::string("cast_to_16 ") + std::string(DTypeName(dtype)));
      const int ix = c.In(x);
      const int iy = c.OutExact("y", std::vector<uint16_t>(x.size(), 0xdead), ref);
      RequireNoFailures(c.Run(
          CastTo16Table(),
          [&](CastTo16Fn* fn, Stream st, const auto& a) {
            fn(ArgAs<float>(a, ix), ArgAs<uint16_t>(a, iy), static_cast<int64_t>(x.size()), st);
          },
          dtype));
      REQUIRE(c.ran().size() >= 2);
    }
  }
}

TEST_CASE("casts from 16 bits: every pattern, every twin, exact") {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    CAPTURE(DTypeName(dtype));
    std::vector<float> ref(all.size());
    Cast16ToF32Ref(dtype, all.data(), ref.data(), static_cast<int64_t>(all.size()));
    // NaN patterns: the reference reads them as the canonical NaN; compare the rest bitwise
    // and NaN-ness apart.
    std::vector<uint16_t> finite;
    std::vector<float> finite_ref;
    for (size_t i = 0; i < all.size(); ++i) {
      if (std::isnan(ref[i])) continue;
      finite.push_back(all[i]);
      finite_ref.push_back(ref[i]);
    }
    TwinCase c(std::string("cast_16_to_f32 ") + std::string(DTypeName(dtype)));
    const int ix = c.InU16(finite);
    const int iy = c.OutExact("y", std::vector<float>(finite.size(), -1.0f), finite_ref);
    RequireNoFailures(c.Run(
        Cast16ToF32Table(),
        [&](Cast16ToF32Fn* fn, Stream st, const auto& a) {
          fn(ArgAs<uint16_t>(a, ix), ArgAs<float>(a, iy), static_cast<int64_t>(finite.size()), st);
        },
        dtype));
    // Round trip: every non-NaN pattern survives 16 -> 32 -> 16 on every twin's cast.
    std::vector<uint16_t> back(finite.size());
    CastTo16(dtype, finite_ref.data(), back.data(), static_cast<int64_t>(back.size()));
    REQUIRE(back == finite);
    // NaN patterns come back as NaN from the CPU twin.
    std::vector<float> cpu(all.size());
    Cast16ToF32(dtype, all.data(), cpu.data(), static_cast<int64_t>(all.size()));
    for (size_t i = 0; i < all.size(); ++i) REQUIRE(std::isnan(cpu[i]) == std::isnan(ref[i]));
  }
}

TEST_CASE("the reference encodes known values") {
  auto bf16 = [](float x) {
    uint16_t y;
    CastTo16Ref(DType::kBF16, &x, &y, 1);
    return y;
  };
  auto f16 = [](float x) {
    uint16_t y;
    CastTo16Ref(DType::kF16, &x, &y, 1);
    return y;
  };
  CHECK(bf16(1.0f) == 0x3f80);
  CHECK(bf16(-2.0f) == 0xc000);
  CHECK(bf16(1.00390625f) == 0x3f80);   // 1 + 2^-8: tie, to even
  CHECK(bf16(1.01171875f) == 0x3f82);   // 1 + 3·2^-8: tie, up to even
  CHECK(bf16(3.4e38f) == 0x7f80);        // past bf16's largest finite (3.39e38): inf
  CHECK(f16(1.0f) == 0x3c00);
  CHECK(f16(65504.0f) == 0x7bff);
  CHECK(f16(65520.0f) == 0x7c00);       // the overflow tie goes to inf (even)
  CHECK(f16(5.9604645e-08f) == 0x0001);  // 2^-24, the smallest subnormal
  CHECK(f16(2.9802322e-08f) == 0x0000);  // 2^-25: tie, to even 0
  CHECK(f16(-0.0f) == 0x8000);
  CHECK(f16(0.333333343f) == 0x3555);
  // half.h's scalar conversions (the fast twins' tails) agree.
  for (float x : Values(2000, 99)) {
    if (std::isnan(x)) continue;
    CHECK(F32ToBf16(x) == bf16(x));
    CHECK(F32ToF16(x) == f16(x));
  }
}

}  // namespace
}  // namespace colossal::kernels
