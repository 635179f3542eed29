// Optimizer bench: one step of each CPU twin over n = 124,439,808 fp32 parameters (GPT-2
// 124M, the whole model as one segment; buffers allocated once), at 1 and 2 threads,
// beside memcpy of n floats (read + write: the memory-bandwidth peer). GB/s counts the
// bytes each step must move: reads plus writes of its fp32 arrays.
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

namespace {

constexpr int64_t kN = 124439808;

template <typename F>
double BestSeconds(F&& f, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

// Uninitialised storage, first touched by the OpenMP team (not by a serial memset).
std::unique_ptr<float[]> Alloc() { return std::unique_ptr<float[]>(new float[kN]); }

void Fill(float* x, float scale, float offset) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < kN; ++i) x[i] = offset + scale * std::sin(1e-3f * (i % 100003));
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

  std::printf("n = %lld fp32 parameters (%.2f GB per array)\n", static_cast<long long>(kN), gb);
  std::printf("%-22s %6s %4s %10s %9s %10s\n", "kernel", "B/elem", "thr", "ms/step", "GB/s",
              "vs memcpy");
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const double t_copy = BestSeconds([&] { std::memcpy(m.get(), g.get(), kN * 4); }, reps);
    Fill(m.get(), 0.0f, 0.0f);
    const double copy_gbs = 2 * gb / t_copy;
    std::printf("%-22s %6d %4d %10.1f %9.1f %10.2f\n", "memcpy", 8, threads, 1e3 * t_copy,
                copy_gbs, 1.0);
    auto report = [&](const char* name, int bytes_per_elem, double seconds) {
      const double gbs = bytes_per_elem / 4.0 * gb / seconds;
      std::printf("%-22s %6d %4d %10.1f %9.1f %10.2f\n", name, bytes_per_elem, threads,
                  1e3 * seconds, gbs, gbs / copy_gbs);
    };

    int64_t step = 0;
    AdamWArgs adamw;
    adamw.w = w.get(), adamw.g = g.get(), adamw.m = m.get(), adamw.v = v.get(), adamw.n = kN;
    adamw.lr = 1e-4f, adamw.weight_decay = 0.1f;
    report("adamw", 28, BestSeconds([&] { adamw.step = ++step; AdamWStep(adamw); }, reps));

    LambArgs lamb;
    lamb.w = w.get(), lamb.g = g.get(), lamb.m = m.get(), lamb.v = v.get(), lamb.n = kN;
    lamb.lr = 1e-4f, lamb.weight_decay = 0.01f;
    double sums[2];
    double t_moments = 1e30, t_apply = 1e30;
    for (int r = 0; r < reps; ++r) {
      lamb.step = ++step;
      t_moments = std::min(t_moments, BestSeconds([&] { LambMoments(lamb, sums); }, 1));
      const float trust = LambTrustRatio(sums[0], sums[1], 10.0f);
      t_apply = std::min(t_apply, BestSeconds([&] { LambApply(lamb, trust); }, 1));
    }
    report("lamb moments", 24, t_moments);
    report("lamb apply", 16, t_apply);
    report("lamb (both phases)", 40, t_moments + t_apply);

    LarsArgs lars;
    lars.w = w.get(), lars.g = g.get(), lars.buf = m.get(), lars.n = kN;
    lars.weight_decay = 1e-4f;
    double t_norms = 1e30, t_lars = 1e30;
    for (int r = 0; r < reps; ++r) {
      t_norms = std::min(t_norms, BestSeconds([&] { LarsNorms(lars, sums); }, 1));
      const float local_lr = LarsLocalLr(sums[0], sums[1], 0.1f, 0.001f, lars.weight_decay);
      t_lars = std::min(t_lars, BestSeconds([&] { LarsApply(lars, local_lr); }, 1));
    }
    report("lars norms", 8, t_norms);
    report("lars apply", 20, t_lars);
    report("lars (both phases)", 28, t_norms + t_lars);

    SgdArgs sgd;
    sgd.w = w.get(), sgd.g = g.get(), sgd.buf = m.get(), sgd.n = kN;
    sgd.lr = 1e-3f, sgd.momentum = 0.9f, sgd.weight_decay = 1e-4f;
    report("sgd momentum", 20, BestSeconds([&] { SgdStep(sgd); }, reps));
    sgd.nesterov = Nesterov::kYes;
    report("sgd nesterov", 20, BestSeconds([&] { SgdStep(sgd); }, reps));

    double norm2 = 0;
    report("sum_squares (grad)", 4, BestSeconds([&] { SumSquares(g.get(), kN, &norm2); }, reps));
    if (!std::isfinite(norm2)) std::printf("non-finite gradient norm\n");
  }
  return 0;
}
