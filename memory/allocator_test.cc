// The host allocator's contract: zero-filled, 256-byte aligned, counted by purpose with
// the peak; a limit refuses with the out-of-memory line that names the bytes asked, the
// peak and what holds the memory; Buffer frees on destruction and on move-assignment.
#include "memory/allocator.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <utility>

namespace colossal::memory {
namespace {

TEST_CASE("host allocations are zeroed, aligned and counted by purpose") {
  Allocator& host = HostAllocator();
  const AllocatorStats before = host.stats();
  {
    Buffer a = Buffer::Host(1000, Purpose::kParameters);
    Buffer b = Buffer::Host(10, Purpose::kActivations);
    REQUIRE(reinterpret_cast<uintptr_t>(a.data()) % 256 == 0);
    REQUIRE(reinterpret_cast<uintptr_t>(b.data()) % 256 == 0);
    for (int i = 0; i < 1000; ++i) REQUIRE(a.as<uint8_t>()[i] == 0);
    const AllocatorStats s = host.stats();
    CHECK(s.used - before.used == 1024 + 256);  // rounded to 256
    CHECK(s.allocations - before.allocations == 2);
    CHECK(s.by_purpose[static_cast<int>(Purpose::kParameters)] -
              before.by_purpose[static_cast<int>(Purpose::kParameters)] ==
          1024);
    CHECK(s.peak >= s.used);
    b = Buffer::Host(600, Purpose::kActivations);  // frees the old b
    CHECK(host.stats().used - before.used == 1024 + 768);
    Buffer c = std::move(a);
    CHECK(a.data() == nullptr);
    CHECK(c.bytes() == 1000);
  }
  CHECK(host.stats().used == before.used);
  CHECK(host.stats().allocations == before.allocations);
}

TEST_CASE("a limit refuses with a line naming bytes, peak and holders") {
  Allocator& host = HostAllocator();
  const int64_t base = host.stats().used;
  host.set_limit(base + 4096);
  Buffer held = Buffer::Host(3000, Purpose::kOptimizerState);
  absl::StatusOr<Buffer> refused = Buffer::Make(host, 2048, Purpose::kActivations);
  host.set_limit(0);
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kResourceExhausted);
  const std::string msg(refused.status().message());
  INFO(msg);
  CHECK(msg.find("host: out of memory asking 2.00 KiB for activations") == 0);
  CHECK(msg.find("optimizer state 3.00 KiB") != std::string::npos);
  CHECK(msg.find("limit ") != std::string::npos);
  // Within the limit again once released.
  held = Buffer();
  host.set_limit(base + 4096);
  CHECK(Buffer::Make(host, 2048, Purpose::kActivations).ok());
  host.set_limit(0);
}

TEST_CASE("a backend without a registered factory has no device allocator") {
  absl::StatusOr<Allocator*> a = DeviceAllocator(kernels::Backend::kCuda, MemoryKind::kDevice, 0);
  REQUIRE(!a.ok());
  CHECK(a.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(a.status().message()).find("plugin is not loaded") != std::string::npos);
}

TEST_CASE("byte counts read as people write them") {
  CHECK(FormatBytes(512) == "512 B");
  CHECK(FormatBytes(1536) == "1.50 KiB");
  CHECK(FormatBytes(int64_t{3} << 30) == "3.00 GiB");
}

}  // namespace
}  // namespace colossal::memory
