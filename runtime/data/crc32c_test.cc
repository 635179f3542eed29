// Tests of CRC-32C against published check values (RFC 3720 B.4, the CRC catalogue)
// and of the fast path against the portable one.
#include "runtime/data/crc32c.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace colossal::data {
namespace {

TEST_CASE("CRC-32C matches published check values") {
  std::string check = "123456789";
  REQUIRE(Crc32c(check.data(), check.size()) == 0xE3069283u);
  REQUIRE(Crc32cPortable(check.data(), check.size()) == 0xE3069283u);
  REQUIRE(Crc32c(nullptr, 0) == 0u);
  // RFC 3720 B.4: 32 bytes of zeros, of 0xFF, and ascending 0..31.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<uint8_t>(i);
  REQUIRE(Crc32c(zeros.data(), 32) == 0x8A9136AAu);
  REQUIRE(Crc32c(ones.data(), 32) == 0x62A8AB43u);
  REQUIRE(Crc32c(ascending.data(), 32) == 0x46DD794Eu);
  REQUIRE(Crc32cPortable(ascending.data(), 32) == 0x46DD794Eu);
}

TEST_CASE("CRC-32C fast and portable paths agree and extend") {
  std::vector<uint8_t> bytes(1000);
  uint32_t x = 12345;
  for (auto& b : bytes) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 16);
  }
  for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 999, 1000}) {
    REQUIRE(Crc32c(bytes.data(), n) == Crc32cPortable(bytes.data(), n));
    // Unaligned start.
    if (n > 0) REQUIRE(Crc32c(bytes.data() + 1, n - 1) == Crc32cPortable(bytes.data() + 1, n - 1));
  }
  uint32_t whole = Crc32c(bytes.data(), 1000);
  for (size_t cut : {0, 1, 13, 500, 999, 1000}) {
    uint32_t first = Crc32c(bytes.data(), cut);
    REQUIRE(Crc32c(bytes.data() + cut, 1000 - cut, first) == whole);
    REQUIRE(Crc32cPortable(bytes.data() + cut, 1000 - cut, first) == whole);
  }
}

}  // namespace
}  // namespace colossal::data
