// MemStats: what the Gemini chunk manager holds and moves, per tier — the figures
// `colossal graph` predicts, metrics report per step and the memory tests hold to the
// budget.
#pragma once

#include <cstdint>

namespace colossal::memory {

struct TierStats {
  int64_t used = 0;       // bytes held now
  int64_t peak = 0;       // the most held at once
  int64_t budget = 0;     // bytes allowed (0: unlimited)
  int64_t bytes_in = 0;   // moved into the tier so far
  int64_t bytes_out = 0;  // moved out of it so far
};

struct MemStats {
  TierStats compute;  // pinned and paged buffers (those being written out included) and
                      // free blocks kept for reuse
  TierStats nvme;     // bytes_in: written to NVMe; bytes_out: read back
  int64_t evictions = 0;
  int64_t prefetches = 0;      // reads started ahead of their Access
  int64_t waited_reads = 0;    // Accesses that found their read still in flight or not started
  double read_wait_seconds = 0;  // time Accesses spent waiting for NVMe reads
  double access_seconds = 0;     // time Accesses took in all (reads, room made, zeroing)
};

}  // namespace colossal::memory
