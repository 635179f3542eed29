// Blockwise attention beside the fused-softmax kernel it may replace: forward + backward
// time of each CPU twin at T = 128 … 8192 (the small GPT's heads: H 6, D 64, batch 1),
// the ratio, and the attention state each keeps between forward and backward (the
// probabilities, 4·H·T² bytes, against the log-sum-exp, 4·H·T bytes), on the same
// strided views of one fused qkv.
//   bazel run -c opt //kernels/attention:block_attention_bench -- [--max-seq 8192] [--reps 2]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"

using namespace colossal::kernels;

namespace {

template <typename F>
double BestMs(F&& f, int reps) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t max_seq = 8192;
  int reps = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--max-seq") == 0) max_seq = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
  }
  const int64_t H = 6, D = 64, C = H * D;
  std::printf("attention forward + backward, batch 1, H %lld, D %lld, %d threads, best of %d\n",
              static_cast<long long>(H), static_cast<long long>(D), omp_get_max_threads(), reps);
  std::printf("%6s | %10s %10s | %10s %10s | %6s | %s\n", "T", "fused ms", "state MiB", "block ms", "state KiB",
              "ratio", "faster");
  for (int64_t T = 128; T <= max_seq; T *= 2) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.5f, 1.5f);
    std::vector<float> qkv(T * 3 * C), dout(T * C), out(T * C), dqkv(T * 3 * C);
    for (float& x : qkv) x = u(rng);
    for (float& x : dout) x = u(rng);
    const AttentionShape whole{1, T, H, D};
    std::vector<float> probs(H * T * T);
    const double fused = BestMs([&] {
      AttentionForward(qkv.data(), out.data(), probs.data(), whole);
      AttentionBackward(dout.data(), qkv.data(), probs.data(), dqkv.data(), whole, Accumulate::kNo);
    }, reps);
    probs = {};
    probs.shrink_to_fit();
    const BlockAttentionShape s{1, H, D, T, T, 0, 0, 3 * C, 3 * C, C};
    std::vector<float> lse(H * T), delta(H * T);
    const double block = BestMs([&] {
      BlockAttentionForward(qkv.data(), qkv.data() + C, qkv.data() + 2 * C, out.data(), lse.data(), true, s);
      BlockAttentionDelta(dout.data(), out.data(), delta.data(), s);
      std::fill(dqkv.begin(), dqkv.end(), 0.0f);
      BlockAttentionBackward(dout.data(), qkv.data(), qkv.data() + C, qkv.data() + 2 * C, lse.data(), delta.data(),
                             dqkv.data(), dqkv.data() + C, dqkv.data() + 2 * C, s);
    }, reps);
    std::printf("%6lld | %10.2f %10.1f | %10.2f %10.1f | %6.3f | %s\n", static_cast<long long>(T), fused,
                4.0 * H * T * T / 1048576.0, block, 4.0 * H * T / 1024.0, block / fused,
                block <= fused ? "block" : "fused");
    std::fflush(stdout);
  }
  return 0;
}
