// SumInto (vectorised) against SumIntoRef (scalar), bit for bit, and the bf16 rounding
// rules against hand-worked values.
#include "parallel/comm/ucx/reduce.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace colossal::parallel::ucx {
namespace {

using kernels::DType;

float Value(int64_t i, int salt) {
  return std::sin(0.37f * static_cast<float>(i) + salt) * (1.0f + static_cast<float>(i % 13));
}

TEST_CASE("bf16 rounds to nearest even and keeps NaN and infinities") {
  CHECK(FloatToBf16(1.0f) == 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  CHECK(FloatToBf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
  CHECK(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(FloatToBf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  uint16_t nan = FloatToBf16(std::numeric_limits<float>::quiet_NaN());
  CHECK(std::isnan(Bf16ToFloat(nan)));
  CHECK(Bf16ToFloat(0x4049) == 3.140625f);
}

TEST_CASE("SumInto equals the scalar reference for f32 and bf16, in and out of place") {
  for (int64_t count : {0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 100003}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      const int64_t es = kernels::DTypeSize(dtype);
      std::vector<char> a(count * es + 4), b(count * es + 4), got(count * es + 4),
          want(count * es + 4);
      for (int64_t i = 0; i < count; ++i) {
        float x = Value(i, 1), y = Value(i, 2);
        if (dtype == DType::kF32) {
          std::memcpy(&a[i * 4], &x, 4);
          std::memcpy(&b[i * 4], &y, 4);
        } else {
          uint16_t bx = FloatToBf16(x), by = FloatToBf16(y);
          std::memcpy(&a[i * 2], &bx, 2);
          std::memcpy(&b[i * 2], &by, 2);
        }
      }
      SumIntoRef(want.data(), a.data(), b.data(), count, dtype);
      SumInto(got.data(), a.data(), b.data(), count, dtype);
      INFO("count " << count << " dtype " << kernels::DTypeName(dtype));
      CHECK(std::memcmp(got.data(), want.data(), count * es) == 0);
      // In place (dst == a), and from an odd offset (unaligned vectors).
      std::vector<char> inplace = a;
      SumInto(inplace.data(), inplace.data(), b.data(), count, dtype);
      CHECK(std::memcmp(inplace.data(), want.data(), count * es) == 0);
      if (count > 0) {
        std::vector<char> a1(count * es + es), b1(count * es + es), out1(count * es + es);
        std::memcpy(a1.data() + es, a.data(), count * es);
        std::memcpy(b1.data() + es, b.data(), count * es);
        SumInto(out1.data() + es, a1.data() + es, b1.data() + es, count, dtype);
        CHECK(std::memcmp(out1.data() + es, want.data(), count * es) == 0);
      }
    }
  }
}

TEST_CASE("f32 sums of small integers are exact and commutative") {
  std::vector<float> a(1001), b(1001), ab(1001), ba(1001);
  for (int i = 0; i < 1001; ++i) {
    a[i] = static_cast<float>(i % 17 - 8);
    b[i] = static_cast<float>(i % 5);
  }
  SumInto(ab.data(), a.data(), b.data(), 1001, DType::kF32);
  SumInto(ba.data(), b.data(), a.data(), 1001, DType::kF32);
  for (int i = 0; i < 1001; ++i) {
    REQUIRE(ab[i] == static_cast<float>(i % 17 - 8 + i % 5));
    REQUIRE(std::memcmp(&ab[i], &ba[i], 4) == 0);
  }
}

}  // namespace
}  // namespace colossal::parallel::ucx
