// Layer norm bench: forward and backward throughput of the CPU twin beside a plain copy
// of the same bytes (the memory-bandwidth peer), at GPT-2 shapes (rows = B*T).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/layer_norm/layer_norm.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d\n", omp_get_max_threads());
  std::printf("%6s %6s %10s %10s %10s %10s %10s %10s\n", "rows", "cols", "fwd us", "fwd GB/s",
              "bwd us", "bwd GB/s", "copy GB/s", "fwd/copy");
  const std::pair<int64_t, int64_t> shapes[] = {{256, 768}, {2048, 384}, {2048, 768}};
  for (auto [rows, cols] : shapes) {
    const int64_t n = rows * cols;
    std::vector<float> x(n), y(n), dy(n), dx(n), w(cols, 1.1f), b(cols, 0.1f);
    for (int64_t i = 0; i < n; ++i) {
      x[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f;
      dy[i] = static_cast<float>((i * 104729) % 997) * 1e-3f - 0.5f;
    }
    std::vector<float> mean(rows), rstd(rows), dw(cols), db(cols);
    const int reps = 50;
    double tf = BestSeconds([&] {
      LayerNormForward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                       cols, 1e-5f);
    }, reps, 0.0, reps);
    double tb = BestSeconds([&] {
      LayerNormBackward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                        dw.data(), db.data(), rows, cols, Accumulate::kYes, Accumulate::kYes);
    }, reps, 0.0, reps);
    double tc = BestSeconds([&] { std::memcpy(y.data(), x.data(), n * 4); }, reps, 0.0, reps);
    const double gb = 1e-9 * n * 4;
    // Bytes that must move: fwd reads x, writes y; bwd reads dy, x, reads and writes dx
    // (accumulate); copy reads and writes n floats.
    std::printf("%6lld %6lld %10.1f %10.1f %10.1f %10.1f %10.1f %10.2f\n",
                static_cast<long long>(rows), static_cast<long long>(cols), tf * 1e6,
                2 * gb / tf, tb * 1e6, 4 * gb / tb, 2 * gb / tc, tc / tf);
  }
  return 0;
}
