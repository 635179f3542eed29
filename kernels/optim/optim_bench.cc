// Optimizer bench: one step of each CPU twin over n = 124,439,808 fp32 parameters (GPT-2
// 124M, the whole model as one segment; buffers allocated once), at 1 and 2 threads,
// beside memcpy of n floats (read + write: the memory-bandwidth peer) and a read-only
// peer (an fp32 sum). GB/s counts the bytes each step must move: reads plus writes.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "kernels/optim/adamw.h"
#include "kernels/optim/grad_norm.h"
#include "kernels/optim/lamb.h"
#include "kernels/optim/lars.h"
#include "kernels/optim/sgd.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

constexpr int64_t kN = 124439808;

// Uninitialised storage, first touched by the OpenMP team (not by a serial memset).
std::unique_ptr<float[]> Alloc() { return std::unique_ptr<float[]>(new float[kN]); }

void Fill(float* x, float scale, float offset) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < kN; ++i) x[i] = offset + scale * std::sin(1e-3f * (i % 100003));
}

// A plain function, not a lambda: GCC does not vectorise loads through a closure.
float ReadPeer(const float* x, int64_t n) {
  float sum = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  return sum;
}

}  // namespace

int main() {
  using namespace colossal::kernels;
  auto w = Alloc(), g = Alloc(), m = Alloc(), v = Alloc();
  Fill(w.get(), 0.02f, 0.0f);
  Fill(g.get(), 1e-3f, 0.0f);
  Fill(m.get(), 0.0f, 0.0f);
  Fill(v.get(), 0.0f, 0.0f);
  const double gb = 1e-9 * kN * 4;  // one pass over one fp32 array
  const int reps = 5;

  std::printf("n = %lld fp32 parameters (%.2f GB per array), best of %d\n",
              static_cast<long long>(kN), gb, reps);
  std::printf("%-20s %6s %4s %9s %8s %12s %10s\n", "kernel", "B/elem", "thr", "ms/step", "GB/s",
              "memcpy GB/s", "vs memcpy");
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    // Each kernel is timed alternately with its own memcpy peer (n floats, g → m; m is
    // then optimizer state again, values stay finite), so both see the same share of a
    // machine that other jobs use too. `body` runs one step and returns its seconds.
    auto measure = [&](const char* name, int bytes_per_elem, auto&& body) {
      double t_kernel = 1e30, t_copy = 1e30;
      for (int r = 0; r < reps; ++r) {
        t_copy = std::min(t_copy, BestSeconds([&] { std::memcpy(m.get(), g.get(), kN * 4); }, 1, 0.0, 1));
        t_kernel = std::min(t_kernel, body());
      }
      const double gbs = bytes_per_elem / 4.0 * gb / t_kernel;
      const double copy_gbs = 2 * gb / t_copy;
      std::printf("%-20s %6d %4d %9.1f %8.1f %12.1f %10.2f\n", name, bytes_per_elem, threads,
                  1e3 * t_kernel, gbs, copy_gbs, gbs / copy_gbs);
    };

    // A read-only peer as well (memcpy's figure counts a read and a write per byte):
    // a plain SIMD fp32 sum, which no reduction kernel here can beat per byte read.
    float peer_sum = 0.0f;
    const double t_read = BestSeconds([&] { peer_sum = ReadPeer(g.get(), kN); }, reps, 0.0, reps);
    std::printf("%-20s %6d %4d %9.1f %8.1f %12s %10s\n", "read peer (sum fp32)", 4, threads,
                1e3 * t_read, gb / t_read, "", "");
    if (!std::isfinite(peer_sum)) std::printf("non-finite peer sum\n");

    int64_t step = 0;
    AdamWArgs adamw;
    adamw.w = w.get(), adamw.g = g.get(), adamw.m = m.get(), adamw.v = v.get(), adamw.n = kN;
    adamw.lr = 1e-4f, adamw.weight_decay = 0.1f;
    measure("adamw", 28, [&] {
      adamw.step = ++step;
      return BestSeconds([&] { AdamWStep(adamw); }, 1, 0.0, 1);
    });

    LambArgs lamb;
    lamb.w = w.get(), lamb.g = g.get(), lamb.m = m.get(), lamb.v = v.get(), lamb.n = kN;
    lamb.lr = 1e-4f, lamb.weight_decay = 0.01f;
    double sums[2] = {1, 1};
    measure("lamb moments", 24, [&] {
      lamb.step = ++step;
      return BestSeconds([&] { LambMoments(lamb, sums); }, 1, 0.0, 1);
    });
    const float trust = LambTrustRatio(sums[0], sums[1], 10.0f);
    measure("lamb apply", 16, [&] { return BestSeconds([&] { LambApply(lamb, trust); }, 1, 0.0, 1); });

    LarsArgs lars;
    lars.w = w.get(), lars.g = g.get(), lars.buf = m.get(), lars.n = kN;
    lars.weight_decay = 1e-4f;
    measure("lars norms", 8, [&] { return BestSeconds([&] { LarsNorms(lars, sums); }, 1, 0.0, 1); });
    const float local_lr = LarsLocalLr(sums[0], sums[1], 0.1f, 0.001f, lars.weight_decay);
    measure("lars apply", 20,
            [&] { return BestSeconds([&] { LarsApply(lars, local_lr); }, 1, 0.0, 1); });

    SgdArgs sgd;
    sgd.w = w.get(), sgd.g = g.get(), sgd.buf = m.get(), sgd.n = kN;
    sgd.lr = 1e-3f, sgd.momentum = 0.9f, sgd.weight_decay = 1e-4f;
    measure("sgd momentum", 20, [&] { return BestSeconds([&] { SgdStep(sgd); }, 1, 0.0, 1); });
    sgd.nesterov = Nesterov::kYes;
    measure("sgd nesterov", 20, [&] { return BestSeconds([&] { SgdStep(sgd); }, 1, 0.0, 1); });

    double norm2 = 0;
    measure("sum_squares (grad)", 4,
            [&] { return BestSeconds([&] { SumSquares(g.get(), kN, &norm2); }, 1, 0.0, 1); });
    if (!std::isfinite(norm2)) std::printf("non-finite gradient norm\n");
  }
  return 0;
}
