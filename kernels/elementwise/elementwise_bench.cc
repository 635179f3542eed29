// Elementwise bench: GB/s (bytes read + written) of Add, AddInto, Scale and Fill beside
// memcpy of the same n floats (the memory-bandwidth peer), at activation and
// parameter sizes of the GPT models. Threads: OMP_NUM_THREADS.
//   bazel run //kernels/elementwise:elementwise_bench
// On a shared machine run with OMP_WAIT_POLICY=PASSIVE: with libgomp's default spinning,
// a preempted worker makes every short parallel region wait for a scheduler slice
// (measured: ~8 ms per empty region at 2 threads while another process held a vCPU).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d  (GB/s = bytes read + written per second, best of repeats)\n",
              omp_get_max_threads());
  std::printf("%10s %9s %9s %9s %9s %9s %9s %9s %10s\n", "n", "Add", "AddInto=", "AddInto+",
              "Scale", "Fill(1)", "Fill(0)", "memcpy", "Add/memcpy");
  // 256·768: a GPT-2 residual at B·T = 256; 256·3072 = 2048·384: its MLP activation and
  // the small model's residual; 2048·1536: the small model's MLP; 124 Mi: all of GPT-2's
  // parameters (gradient zeroing and accumulation).
  for (int64_t n : {int64_t{1} << 14, int64_t{1} << 16, int64_t{256} * 768,
                    int64_t{256} * 3072, int64_t{2048} * 1536, int64_t{124} << 20}) {
    std::vector<float> a(n, 0.5f), b(n, 0.25f), c(n, 0.0f);
    const double gb = 4e-9 * n;
    const double t_add = BestSeconds([&] { Add(a.data(), b.data(), c.data(), n); }, 5);
    const double t_copy =
        BestSeconds([&] { AddInto(a.data(), c.data(), n, Accumulate::kNo); }, 5);
    const double t_acc = BestSeconds([&] { AddInto(a.data(), c.data(), n, Accumulate::kYes); }, 5);
    const double t_scale = BestSeconds([&] { Scale(c.data(), n, 0.999f); }, 5);
    const double t_fill = BestSeconds([&] { Fill(c.data(), n, 1.0f); }, 5);
    const double t_zero = BestSeconds([&] { Fill(c.data(), n, 0.0f); }, 5);
    const double t_memcpy = BestSeconds([&] { std::memcpy(c.data(), a.data(), n * 4); }, 5);
    std::printf("%10lld %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %10.2f\n",
                static_cast<long long>(n), 3 * gb / t_add, 2 * gb / t_copy, 3 * gb / t_acc,
                2 * gb / t_scale, gb / t_fill, gb / t_zero, 2 * gb / t_memcpy,
                (3 * gb / t_add) / (2 * gb / t_memcpy));
  }
  return 0;
}
