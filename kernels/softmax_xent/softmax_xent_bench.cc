// Softmax cross-entropy bench: GB/s of the CPU twin's forward (reads the logits once)
// and backward (reads logits, writes dlogits; in place as in training, and out of place)
// at GPT-2 124M's [256, 50257] and the small model's [2048, 256], beside memcpy of the
// same bytes (read + write). Both instruction sets, 1 and 2 threads.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/softmax_xent/softmax_xent.h"
#include "kernels/softmax_xent/softmax_xent_cpu.h"

namespace {

template <typename F>
double Seconds(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace

int main() {
  using namespace colossal::kernels;
  using internal::SoftmaxXentIsa;
  std::printf("%6s %6s %7s %4s %9s %9s %9s %9s %9s %9s\n", "n", "v", "isa", "thr", "fwd GB/s",
              "bwd-ip", "bwd-oop", "copy GB/s", "fwd ms", "bwd-ip ms");
  for (auto [n, v] : {std::pair<int64_t, int64_t>{256, 50257}, {2048, 256}}) {
    std::vector<float> x(n * v), dx(n * v), work(n * v), loss(n), lse(n), dloss(n, 1.0f / n);
    for (int64_t i = 0; i < n * v; ++i) x[i] = 4.0f * std::sin(0.001f * static_cast<float>(i));
    std::vector<int32_t> targets(n);
    for (int64_t i = 0; i < n; ++i) targets[i] = static_cast<int32_t>((i * 7919) % v);
    const double gb = 1e-9 * static_cast<double>(n * v) * 4;
    for (SoftmaxXentIsa isa : {SoftmaxXentIsa::kAuto, SoftmaxXentIsa::kAvx2}) {
      internal::SetSoftmaxXentIsaForTesting(isa);
      const char* isa_name = internal::SoftmaxXentUsesAvx512() ? "avx512" : "avx2";
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        // One rep times memcpy, the forward, the in-place backward (on a fresh copy of
        // the logits, refreshed untimed) and the out-of-place backward back to back, so
        // all four see the same share of a machine that other jobs use too.
        double tc = 1e30, tf = 1e30, tb_ip = 1e30, tb_oop = 1e30;
        for (int r = 0; r < 30; ++r) {
          tc = std::min(tc, Seconds([&] { std::memcpy(dx.data(), x.data(), n * v * 4); }));
          tf = std::min(tf, Seconds([&] {
                          SoftmaxXentForward(x.data(), v, targets.data(), loss.data(),
                                             lse.data(), n, v);
                        }));
          std::memcpy(work.data(), x.data(), n * v * 4);
          tb_ip = std::min(tb_ip, Seconds([&] {
                             SoftmaxXentBackward(work.data(), v, lse.data(), targets.data(),
                                                 dloss.data(), work.data(), n, v,
                                                 Accumulate::kNo);
                           }));
          tb_oop = std::min(tb_oop, Seconds([&] {
                              SoftmaxXentBackward(x.data(), v, lse.data(), targets.data(),
                                                  dloss.data(), dx.data(), n, v,
                                                  Accumulate::kNo);
                            }));
        }
        std::printf("%6lld %6lld %7s %4d %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f\n",
                    static_cast<long long>(n), static_cast<long long>(v), isa_name, threads,
                    gb / tf, 2 * gb / tb_ip, 2 * gb / tb_oop, 2 * gb / tc, 1e3 * tf,
                    1e3 * tb_ip);
      }
    }
  }
  return 0;
}
