// Timing for the kernel benches: the best wall time of repeated calls after one
// untimed warm-up call (page faults, thread start, oneDNN's first-call set-up). The best
// rather than the mean, because the machine may be shared: the fastest call is the one
// least disturbed.
#pragma once

#include <algorithm>
#include <chrono>

namespace colossal::kernels::testing {

// Calls f once untimed, then at least `min_reps` times and until `min_seconds` have
// passed (at most `max_reps`); returns the best call in seconds.
template <typename F>
double BestSeconds(F&& f, int min_reps = 3, double min_seconds = 0.2, int max_reps = 500) {
  f();
  double best = 1e30, total = 0;
  for (int r = 0; r < max_reps && (r < min_reps || total < min_seconds); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, t);
    total += t;
  }
  return best;
}

}  // namespace colossal::kernels::testing
