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
#include <vector>

#include "kernels/attention/attention.h"

namespace {

template <typename F>
double BestSeconds(F&& f, int reps) {
  f();  // warm-up: page faults, thread pool, oneDNN kernel selection
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

// GFLOP/s of dnnl_sgemm on an n×n×n problem with n chosen so 2n³ ≈ flops.
double GemmPeerGflops(double flops, int reps) {
  const int64_t n = std::max<int64_t>(16, std::lround(std::cbrt(flops / 2)));
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const double t = BestSeconds([&] {
    dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  }, reps);
  return 2.0 * n * n * n / t * 1e-9;
}

}  // namespace

int main() {
  using namespace colossal::kernels;
  std::printf("threads=%d\n", omp_get_max_threads());
  std::printf("%3s %5s %3s %3s | %9s %9s | %9s %9s | %12s %12s\n", "B", "T", "H", "D",
              "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s", "peer fwd GF", "peer bwd GF");
  const AttentionShape shapes[] = {{8, 256, 6, 64}, {4, 64, 12, 64}, {4, 1024, 12, 64}};
  for (const AttentionShape& s : shapes) {
    const int64_t C = s.channels();
    std::vector<float> qkv(s.batch * s.seq * 3 * C), out(s.batch * s.seq * C);
    std::vector<float> probs(s.batch * s.heads * s.seq * s.seq), dout(out.size());
    std::vector<float> dqkv(qkv.size());
    for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = std::sin(0.37 * i);
    for (size_t i = 0; i < dout.size(); ++i) dout[i] = std::cos(0.11 * i);
    const int reps = s.seq >= 1024 ? 3 : 20;
    const double tf = BestSeconds([&] {
      AttentionForward(qkv.data(), out.data(), probs.data(), s);
    }, reps);
    const double tb = BestSeconds([&] {
      AttentionBackward(dout.data(), qkv.data(), probs.data(), dqkv.data(), s,
                        Accumulate::kNo);
    }, reps);
    const double pairs = 0.5 * s.seq * (s.seq + 1);
    const double fwd_flops = 2.0 * 2.0 * s.head_dim * pairs * s.batch * s.heads;
    const double bwd_flops = 2 * fwd_flops;
    std::printf("%3lld %5lld %3lld %3lld | %9.3f %9.1f | %9.3f %9.1f | %12.1f %12.1f\n",
                static_cast<long long>(s.batch), static_cast<long long>(s.seq),
                static_cast<long long>(s.heads), static_cast<long long>(s.head_dim), tf * 1e3,
                fwd_flops / tf * 1e-9, tb * 1e3, bwd_flops / tb * 1e-9,
                GemmPeerGflops(fwd_flops, reps), GemmPeerGflops(bwd_flops, reps));
  }
  return 0;
}
