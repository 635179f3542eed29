// The sweep shared by the colossal (UCX) and OpenMPI sides of the collectives benchmark:
// which collectives, which sizes, how many iterations, the NCCL-tests bandwidth
// conventions, and the one-line result format the driver parses. Header-only, no deps.
//
// Size is the NCCL-tests "size": all-reduce the buffer (count·4 bytes, in place);
// reduce-scatter the send buffer (n·recvcount·4); all-gather the receive buffer
// (n·sendcount·4). algbw = size / time; busbw = algbw · 2(n-1)/n (all-reduce) or
// algbw · (n-1)/n (reduce-scatter, all-gather). Elements are fp32, sums.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace colossal::bench {

enum class Collective { kAllReduce, kReduceScatter, kAllGather };
inline constexpr Collective kCollectives[] = {Collective::kAllReduce, Collective::kReduceScatter,
                                              Collective::kAllGather};

inline const char* Name(Collective c) {
  switch (c) {
    case Collective::kAllReduce: return "all_reduce";
    case Collective::kReduceScatter: return "reduce_scatter";
    case Collective::kAllGather: return "all_gather";
  }
  return "?";
}

inline double BusFactor(Collective c, int n) {
  return c == Collective::kAllReduce ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
}

// 4 KiB, 16 KiB, ... up to max_bytes (powers of 4).
inline std::vector<int64_t> Sizes(int64_t min_bytes, int64_t max_bytes) {
  std::vector<int64_t> sizes;
  for (int64_t b = min_bytes; b <= max_bytes; b *= 4) sizes.push_back(b);
  return sizes;
}

// Elements per rank of the call for a given size: the all-reduce count, the
// reduce-scatter receive count, the all-gather send count.
inline int64_t CountPerCall(Collective c, int64_t bytes, int n) {
  return c == Collective::kAllReduce ? bytes / 4 : bytes / 4 / n;
}

// One-time correctness check before each size is timed (both sides, every rank): the
// inputs are small integers that depend on rank and index, so every expected fp32 sum is
// exact. FillForCheck writes this rank's input of one call (all-reduce: `buf`, count
// elements; reduce-scatter: `send`, n·count; all-gather: `send`, count); CheckResult
// compares this rank's output (all-reduce: `buf`; otherwise `recv`) and returns the first
// wrong index, or -1 when every element is right.
inline float CheckInput(int rank, int64_t i) {
  return static_cast<float>((rank + 1) * (i % 5 + 1));
}

inline void FillForCheck(Collective c, int rank, int n, int64_t count, float* send, float* buf) {
  if (c == Collective::kAllReduce) {
    for (int64_t i = 0; i < count; ++i) buf[i] = CheckInput(rank, i);
  } else {
    const int64_t elems = c == Collective::kReduceScatter ? count * n : count;
    for (int64_t i = 0; i < elems; ++i) send[i] = CheckInput(rank, i);
  }
}

inline int64_t CheckResult(Collective c, int rank, int n, int64_t count, const float* recv,
                           const float* buf) {
  const float rank_sum = static_cast<float>(n * (n + 1) / 2);  // Σ (r+1)
  switch (c) {
    case Collective::kAllReduce:
      for (int64_t i = 0; i < count; ++i) {
        if (buf[i] != rank_sum * static_cast<float>(i % 5 + 1)) return i;
      }
      return -1;
    case Collective::kReduceScatter:
      for (int64_t i = 0; i < count; ++i) {
        if (recv[i] != rank_sum * static_cast<float>((rank * count + i) % 5 + 1)) return i;
      }
      return -1;
    case Collective::kAllGather:
      for (int r = 0; r < n; ++r) {
        for (int64_t i = 0; i < count; ++i) {
          if (recv[r * count + i] != CheckInput(r, i)) return r * count + i;
        }
      }
      return -1;
  }
  return 0;
}

// Iterations so that one timed batch lasts about `target_s`, from one trial run.
inline int Iterations(double trial_s, double target_s) {
  double iters = target_s / std::max(trial_s, 1e-7);
  return static_cast<int>(std::clamp(iters, 3.0, 2000.0));
}

// "result <collective> <ranks> <bytes> <seconds per call>".
inline void PrintResult(FILE* out, Collective c, int n, int64_t bytes, double seconds) {
  std::fprintf(out, "result %s %d %lld %.9g\n", Name(c), n, static_cast<long long>(bytes), seconds);
  std::fflush(out);
}

}  // namespace colossal::bench
