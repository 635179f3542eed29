// Attention bench: forward and backward time and effective GFLOP/s of the CPU twin at the
// GPT-2 shapes of the two reference models, beside dnnl_sgemm on a square GEMM of the same
// FLOP count (the peer: what the machine gives a single large GEMM).
// Effective FLOPs count only the causal half: forward 2 GEMMs of 2·D FLOPs per (t, j ≤ t)
// pair per head, backward 4 such GEMMs; softmax and masking are not counted.
#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "kernels/attention/attention.h"

namespace {

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Best wall-clock and best process-CPU seconds of `reps` runs. The machine is shared:
// with one thread, CPU time leaves out the time other processes held the core.
struct Timing {
  double wall = 1e30;
  double cpu = 1e30;
};

template <typename F>
Timing Best(F&& f, int reps) {
  f();  // warm-up: page faults, thread pool, oneDNN kernel selection
  Timing best;
  for (int r = 0; r < reps; ++r) {
    const double c0 = ProcessCpuSeconds();
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    best.cpu = std::min(best.cpu, ProcessCpuSeconds() - c0);
    best.wall = std::min(best.wall, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

// Timing of dnnl_sgemm on an n×n×n problem with n chosen so 2n³ ≈ flops, scaled to
// `flops` (the time an equal-FLOP GEMM would take).
Timing GemmPeer(double flops, int reps) {
  const int64_t n = std::max<int64_t>(16, std::lround(std::cbrt(flops / 2)));
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  Timing t = Best([&] {
    dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  }, reps);
  const double ratio = flops / (2.0 * n * n * n);
  t.wall *= ratio;
  t.cpu *= ratio;
  return t;
}

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d\n", omp_get_max_threads());
  // Per direction: wall ms, process-CPU ms, GF/s on wall time, GF/s per CPU-second;
  // then the peer GEMM's GF/s on wall and on CPU time.
  std::printf("%2s %4s %2s %2s | %-33s | %-33s | %-11s | %-11s\n", "B", "T", "H", "D",
              "fwd: ms  cpu-ms  GF/s  GF/cpu-s", "bwd: ms  cpu-ms  GF/s  GF/cpu-s",
              "peer fwd", "peer bwd");
  const AttentionShape shapes[] = {{8, 256, 6, 64}, {4, 64, 12, 64}, {4, 1024, 12, 64}};
  for (const AttentionShape& s : shapes) {
    const int64_t C = s.channels();
    std::vector<float> qkv(s.batch * s.seq * 3 * C), out(s.batch * s.seq * C);
    std::vector<float> probs(s.batch * s.heads * s.seq * s.seq), dout(out.size());
    std::vector<float> dqkv(qkv.size());
    for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = std::sin(0.37 * i);
    for (size_t i = 0; i < dout.size(); ++i) dout[i] = std::cos(0.11 * i);
    const int reps = s.seq >= 1024 ? 3 : 20;
    const Timing tf = Best([&] {
      AttentionForward(qkv.data(), out.data(), probs.data(), s);
    }, reps);
    const Timing tb = Best([&] {
      AttentionBackward(dout.data(), qkv.data(), probs.data(), dqkv.data(), s,
                        Accumulate::kNo);
    }, reps);
    const double pairs = 0.5 * s.seq * (s.seq + 1);
    const double fwd_flops = 2.0 * 2.0 * s.head_dim * pairs * s.batch * s.heads;
    const double bwd_flops = 2 * fwd_flops;
    const Timing pf = GemmPeer(fwd_flops, reps), pb = GemmPeer(bwd_flops, reps);
    auto gf = [](double flops, double seconds) { return flops / seconds * 1e-9; };
    std::printf(
        "%2lld %4lld %2lld %2lld | %8.2f %7.2f %6.1f %8.1f | %8.2f %7.2f %6.1f %8.1f | "
        "%5.0f %5.0f | %5.0f %5.0f\n",
        static_cast<long long>(s.batch), static_cast<long long>(s.seq),
        static_cast<long long>(s.heads), static_cast<long long>(s.head_dim), tf.wall * 1e3,
        tf.cpu * 1e3, gf(fwd_flops, tf.wall), gf(fwd_flops, tf.cpu), tb.wall * 1e3,
        tb.cpu * 1e3, gf(bwd_flops, tb.wall), gf(bwd_flops, tb.cpu), gf(fwd_flops, pf.wall),
        gf(fwd_flops, pf.cpu), gf(bwd_flops, pb.wall), gf(bwd_flops, pb.cpu));
  }
  return 0;
}
