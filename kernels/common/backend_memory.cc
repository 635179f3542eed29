// The registry of backend memory operations, with the host's for ref and cpu.
#include "kernels/common/backend_memory.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace colossal::kernels {
namespace {

std::array<BackendMemory, kNumBackends>& Table() {
  static std::array<BackendMemory, kNumBackends> table{};
  return table;
}

// Per backend: 0 not asked yet, 1 present, 2 absent. A race asks `present` twice at worst.
std::array<std::atomic<int>, kNumBackends>& Presence() {
  static std::array<std::atomic<int>, kNumBackends> presence{};
  return presence;
}

void* HostAllocate(int64_t bytes) { return std::malloc(static_cast<size_t>(bytes > 0 ? bytes : 1)); }
void HostRelease(void* ptr) { std::free(ptr); }
void HostCopy(void* dst, const void* src, int64_t bytes) { std::memcpy(dst, src, static_cast<size_t>(bytes)); }
void HostSynchronize(Stream) {}  // host twins run synchronously
void HostCopyOn(void* dst, const void* src, int64_t bytes, Stream) {
  if (bytes > 0) std::memcpy(dst, src, static_cast<size_t>(bytes));
}
void HostZero(void* dst, int64_t bytes, Stream) {
  if (bytes > 0) std::memset(dst, 0, static_cast<size_t>(bytes));
}

const bool kHostRegistered = [] {
  const BackendMemory host{HostAllocate, HostRelease, HostCopy,  HostCopy,
                           HostSynchronize, nullptr,  HostCopyOn, HostZero};
  RegisterBackendMemory(Backend::kRef, host);
  RegisterBackendMemory(Backend::kCpu, host);
  return true;
}();

}  // namespace

void RegisterBackendMemory(Backend backend, const BackendMemory& memory) {
  Table()[static_cast<int>(backend)] = memory;
}

const BackendMemory* FindBackendMemory(Backend backend) {
  (void)kHostRegistered;
  const int b = static_cast<int>(backend);
  const BackendMemory& m = Table()[b];
  if (m.allocate == nullptr) return nullptr;
  if (m.present == nullptr) return &m;
  int known = Presence()[b].load(std::memory_order_acquire);
  if (known == 0) {
    known = m.present() ? 1 : 2;
    Presence()[b].store(known, std::memory_order_release);
  }
  return known == 1 ? &m : nullptr;
}

}  // namespace colossal::kernels
