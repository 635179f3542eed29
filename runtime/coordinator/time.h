// Clocks of the coordinator: wall time for what is stored and shown (unix ms), the
// steady clock for leases and waits (immune to wall-clock jumps).
#pragma once

#include <chrono>
#include <cstdint>

namespace colossal::coordinator {

inline int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace colossal::coordinator
