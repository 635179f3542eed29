// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of token files.
// Hardware (SSE4.2 crc32 instruction) when the build targets it, a portable
// slicing-by-8 table otherwise; both give identical results. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace colossal::data {

// CRC-32C of `size` bytes, continuing from `crc` (the value returned for the bytes
// before them; 0 to start): Crc32c(ab) == Crc32c(b, Crc32c(a)).
// Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

// The portable implementation, exposed so tests can compare it with the fast one.
uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc = 0);

}  // namespace colossal::data
