// The blockwise kernel's own memory does not grow with the sequence: every allocation
// the CPU twin makes during a forward and a backward (counted by replacing operator new
// in this test binary) is measured at T = 256, 1024 and 4096. The caller's state is the
// log-sum-exp, H·T floats, so memory per head is O(T); the fused kernel's state is its
// H·T² probabilities.
#include <catch2/catch.hpp>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/testing/kernel_testing.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<int64_t> live{0}, peak{0};
}  // namespace

void* operator new(std::size_t n) {
  void* p = std::malloc(n + 16);
  if (p == nullptr) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = n;
  if (counting.load()) {
    const int64_t now = live.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  return static_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  void* base = static_cast<char*>(p) - 16;
  if (counting.load()) live.fetch_sub(static_cast<int64_t>(*static_cast<std::size_t*>(base)));
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace colossal::kernels {
namespace {

// Peak bytes the CPU twin allocates for one forward + backward at T positions.
int64_t KernelPeakBytes(int64_t T) {
  const int64_t H = 2, D = 64, C = H * D;
  const auto qkv = testing::Random<float>(T * 3 * C, 5, -1.5, 1.5);
  const auto dout = testing::Random<float>(T * C, 6);
  std::vector<float> out(T * C), lse(H * T), delta(H * T), dqkv(T * 3 * C, 0.0f);
  const BlockAttentionShape s{1, H, D, T, T, 0, 0, 3 * C, 3 * C, C};
  const Stream cpu{Backend::kCpu};
  live = 0;
  peak = 0;
  counting = true;
  BlockAttentionForward(qkv.data(), qkv.data() + C, qkv.data() + 2 * C, out.data(), lse.data(), true, s, cpu);
  BlockAttentionDelta(dout.data(), out.data(), delta.data(), s);
  BlockAttentionBackward(dout.data(), qkv.data(), qkv.data() + C, qkv.data() + 2 * C, lse.data(), delta.data(),
                         dqkv.data(), dqkv.data() + C, dqkv.data() + 2 * C, s, cpu);
  counting = false;
  return peak.load();
}

TEST_CASE("block attention: the kernel's own memory does not grow with T") {
  omp_set_num_threads(1);
  // Warm the per-thread scratch at the largest size first, so later runs do not grow it;
  // then every size must allocate no more than the smallest does.
  KernelPeakBytes(4096);
  const int64_t small = KernelPeakBytes(256), mid = KernelPeakBytes(1024), large = KernelPeakBytes(4096);
  INFO("peak kernel allocations: T 256 " << small << " B, T 1024 " << mid << " B, T 4096 " << large << " B");
  CHECK(mid <= small + 4096);
  CHECK(large <= small + 4096);
  // And cold: a fresh thread's scratch is a fixed tile (2 · 64² floats), whatever T.
  int64_t cold = 0;
  std::thread([&] {
    omp_set_num_threads(1);
    cold = KernelPeakBytes(4096);
  }).join();
  INFO("cold thread at T 4096: " << cold << " B");
  CHECK(cold <= 2 * 64 * 64 * 4 + (64 * 64 + 64 * 64 + 2 * 64) * 4 + 4096);
  // The fused kernel's probabilities alone at T 4096: H·T²·4 bytes.
  CHECK(2 * 4096 * 4096 * 4 > 1000 * (cold + 1));
}

}  // namespace
}  // namespace colossal::kernels
