// Place: the host place copies with memcpy and allocates from the host allocator; a ref
// place is host memory too; a device place without its backend loaded is a clear
// FAILED_PRECONDITION; a parameter store made on a place takes its memory from the
// place's allocator and says RESOURCE_EXHAUSTED, naming the bytes, when it does not fit.
#include "memory/place.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "memory/param_store.h"

namespace colossal::memory {
namespace {

TEST_CASE("the host place: copies, zeroing, allocation by purpose") {
  const Place host = Place::Host();
  CHECK(host.on_host());
  CHECK(host.backend() == kernels::Backend::kCpu);
  const int64_t before = HostAllocator().stats().by_purpose[static_cast<int>(Purpose::kOptimizerState)];
  absl::StatusOr<Buffer> b = host.Allocate(64 * sizeof(float), Purpose::kOptimizerState);
  REQUIRE(b.ok());
  CHECK(HostAllocator().stats().by_purpose[static_cast<int>(Purpose::kOptimizerState)] >= before + 64 * 4);
  std::vector<float> src(64), back(64, -1.0f);
  for (int i = 0; i < 64; ++i) src[i] = 0.5f * i;
  host.CopyFromHost(b->data(), src.data(), 64 * sizeof(float));
  host.Copy(b->as<float>() + 32, b->as<float>(), 32 * sizeof(float));
  host.Zero(b->as<float>(), 8 * sizeof(float));
  host.CopyToHost(back.data(), b->data(), 64 * sizeof(float));
  for (int i = 0; i < 64; ++i) {
    CAPTURE(i);
    const float want = i < 8 ? 0.0f : i < 32 ? src[i] : src[i - 32];
    CHECK(back[i] == want);
  }
}

TEST_CASE("host staging: a view and a fill, direct on the host, through copies on the device path") {
  std::vector<float> mem = {1, 2, 3, 4};
  for (const Place& place : {Place::Host(), Place::HostAsDevice()}) {
    INFO("on_host " << place.on_host());
    std::deque<std::vector<float>> staged;
    const float* view = place.HostView(mem.data(), 4, staged);
    CHECK((view == mem.data()) == place.on_host());
    CHECK(staged.size() == (place.on_host() ? 0u : 1u));
    CHECK(std::vector<float>(view, view + 4) == mem);
    std::vector<float> staging;
    REQUIRE(place.FillFromHost(mem.data(), 2, staging, [&](float* p) {
      CHECK((p == mem.data()) == place.on_host());
      p[0] = 9, p[1] = 8;
      return absl::OkStatus();
    }).ok());
    CHECK(mem == std::vector<float>{9, 8, 3, 4});
    // A failed fill reports its error; off the host the memory is not written.
    const absl::Status failed = place.FillFromHost(mem.data(), 2, staging, [&](float* p) {
      p[0] = -1;
      return absl::DataLossError("truncated");
    });
    CHECK(absl::IsDataLoss(failed));
    CHECK(mem[0] == (place.on_host() ? -1.0f : 9.0f));
    mem = {1, 2, 3, 4};
  }
}

TEST_CASE("places: a ref place is host memory, a device place needs its backend") {
  absl::StatusOr<Place> ref = Place::Device(kernels::Backend::kRef, 0, {kernels::Backend::kRef, nullptr});
  REQUIRE(ref.ok());
  CHECK(ref->on_host());
  absl::StatusOr<Place> mismatch = Place::Device(kernels::Backend::kCuda, 0, {kernels::Backend::kCpu, nullptr});
  CHECK(absl::IsInvalidArgument(mismatch.status()));
  // This test links no CUDA backend: whatever the machine has, the place is refused.
  absl::StatusOr<Place> cuda = Place::Device(kernels::Backend::kCuda, 0, {kernels::Backend::kCuda, nullptr});
  REQUIRE(absl::IsFailedPrecondition(cuda.status()));
  CHECK(std::string(cuda.status().message()) ==
        "the cuda backend is not available in this process (its plugin is not loaded or no device is visible)");
}

TEST_CASE("a parameter store on a place: its allocator's memory and its out-of-memory error") {
  const std::vector<ParamStore::Spec> specs = {{"w", {1000, 1000}}, {"b", {1000}}};
  absl::StatusOr<std::unique_ptr<ParamStore>> store = ParamStore::Make(specs, 0, true, Place::Host());
  REQUIRE(store.ok());
  CHECK((*store)->allocated());
  CHECK((*store)->place().on_host());
  CHECK((*store)->data(1)[999] == 0.0f);  // zero-filled
  HostAllocator().set_limit(HostAllocator().stats().used + 6'000'000);
  absl::StatusOr<std::unique_ptr<ParamStore>> big = ParamStore::Make(specs, 0, true, Place::Host());
  HostAllocator().set_limit(0);
  REQUIRE(absl::IsResourceExhausted(big.status()));
  // The gradients do not fit after the parameters: 4,004,096 bytes asked for them.
  CHECK(std::string(big.status().message()).find("out of memory asking") != std::string::npos);
  CHECK(std::string(big.status().message()).find("for gradients") != std::string::npos);
}

}  // namespace
}  // namespace colossal::memory
