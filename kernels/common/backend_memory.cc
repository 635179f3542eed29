// The registry of backend memory operations, with the host's for ref and cpu.
#include "kernels/common/backend_memory.h"

#include <array>
#include <cstdlib>
#include <cstring>

namespace colossal::kernels {
namespace {

std::array<BackendMemory, kNumBackends>& Table() {
  static std::array<BackendMemory, kNumBackends> table{};
  return table;
}

void* HostAllocate(int64_t bytes) { return std::malloc(static_cast<size_t>(bytes > 0 ? bytes : 1)); }
void HostRelease(void* ptr) { std::free(ptr); }
void HostCopy(void* dst, const void* src, int64_t bytes) { std::memcpy(dst, src, static_cast<size_t>(bytes)); }
void HostSynchronize(Stream) {}  // host twins run synchronously

const bool kHostRegistered = [] {
  const BackendMemory host{HostAllocate, HostRelease, HostCopy, HostCopy, HostSynchronize};
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
  const BackendMemory& m = Table()[static_cast<int>(backend)];
  return m.allocate != nullptr ? &m : nullptr;
}

}  // namespace colossal::kernels
