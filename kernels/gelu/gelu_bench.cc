// GELU bench: forward and backward throughput of the CPU twin beside a plain copy of
// the same bytes (the memory-bandwidth peer), at the sizes of GPT-2 124M's MLP.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/gelu/gelu.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d\n", omp_get_max_threads());
  std::printf("%12s %12s %12s %12s %12s\n", "n", "fwd GB/s", "bwd GB/s", "copy GB/s",
              "fwd/copy");
  for (int64_t n : {int64_t{1} << 16, int64_t{256} * 3072, int64_t{2048} * 1536,
                    int64_t{8} << 20}) {
    std::vector<float> x(n, 0.3f), y(n), dy(n, 1.0f), dx(n);
    const int reps = 20;
    double tf = BestSeconds([&] { GeluForward(x.data(), y.data(), n); }, reps, 0.0, reps);
    double tb = BestSeconds(
        [&] { GeluBackward(x.data(), dy.data(), dx.data(), n, Accumulate::kNo); }, reps, 0.0, reps);
    double tc = BestSeconds([&] { std::memcpy(y.data(), x.data(), n * 4); }, reps, 0.0, reps);
    double gb = 1e-9 * n * 4;
    std::printf("%12lld %12.1f %12.1f %12.1f %12.2f\n", static_cast<long long>(n), 2 * gb / tf,
                3 * gb / tb, 2 * gb / tc, tc / tf);
  }
  return 0;
}
