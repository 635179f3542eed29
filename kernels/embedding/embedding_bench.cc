// Embedding bench: rows/s (ids processed per second) and GB/s of the CPU forward
// gather and backward scatter-add (accumulate and overwrite, which zeroes the whole
// table) at GPT-2 124M's wte and the small model's, beside memcpy of the gathered bytes.
// Threads: OMP_NUM_THREADS.
//   bazel run //kernels/embedding:embedding_bench
// On a shared machine run with OMP_WAIT_POLICY=PASSIVE: with libgomp's default spinning,
// a preempted worker makes every short parallel region wait for a scheduler slice
// (measured: ~8 ms per empty region at 2 threads while another process held a vCPU).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/embedding/embedding.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d  (Mrows/s = million ids per second; GB/s counts bytes moved)\n",
              omp_get_max_threads());
  std::printf("%6s %5s %6s | %10s %8s | %10s %8s | %10s %8s %8s | %9s\n", "n", "c", "rows",
              "fwd Mrow/s", "GB/s", "bwd+ Mrow/s", "GB/s", "bwd= Mrow/s", "GB/s", "ms",
              "memcpy GB/s");
  struct Shape {
    int64_t n, c, rows;
  };
  for (Shape s : {Shape{256, 768, 50257}, Shape{2048, 384, 256}}) {
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(s.rows - 1));
    std::vector<int32_t> ids(s.n);
    for (auto& id : ids) id = pick(rng);
    std::vector<float> table(s.rows * s.c, 0.5f), out(s.n * s.c), dtable(s.rows * s.c, 0.0f);
    const double row_gb = 4e-9 * s.c;
    const double t_fwd =
        BestSeconds([&] { EmbeddingForward(ids.data(), table.data(), out.data(), s.n, s.rows, s.c); }, 5);
    const double t_acc = BestSeconds([&] {
      EmbeddingBackward(ids.data(), out.data(), dtable.data(), s.n, s.rows, s.c,
                        Accumulate::kYes);
    }, 5);
    const double t_over = BestSeconds([&] {
      EmbeddingBackward(ids.data(), out.data(), dtable.data(), s.n, s.rows, s.c,
                        Accumulate::kNo);
    }, 5);
    std::vector<float> copy_src(s.n * s.c, 0.25f);
    const double t_copy =
        BestSeconds([&] { std::memcpy(out.data(), copy_src.data(), s.n * s.c * 4); }, 5);
    // Bytes: fwd reads + writes n rows; bwd+ reads dout and reads + writes n table rows;
    // bwd= also writes the whole table once.
    std::printf("%6lld %5lld %6lld | %10.2f %8.1f | %10.2f %8.1f | %10.2f %8.1f %8.3f | %9.1f\n",
                static_cast<long long>(s.n), static_cast<long long>(s.c),
                static_cast<long long>(s.rows), 1e-6 * s.n / t_fwd, 2 * s.n * row_gb / t_fwd,
                1e-6 * s.n / t_acc, 3 * s.n * row_gb / t_acc, 1e-6 * s.n / t_over,
                (3 * s.n + s.rows) * row_gb / t_over, 1e3 * t_over,
                2 * s.n * row_gb / t_copy);
  }
  return 0;
}
