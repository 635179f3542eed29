// GEMM peak measurement.
#include "runtime/worker/device_peak.h"

#include <omp.h>

#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "runtime/daemon/devices.h"

namespace colossal::worker {

double MatmulPeakFlops() {
  static std::mutex mu;
  static std::map<int, double> cache;  // by thread count
  std::lock_guard<std::mutex> lock(mu);
  const int threads = omp_get_max_threads();
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  const int64_t n = 1536;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  kernels::MatmulArgs args;
  args.m = args.n = args.k = n;
  args.a = a.data(), args.lda = n;
  args.b = b.data(), args.ldb = n;
  args.c = c.data(), args.ldc = n;
  kernels::Matmul(args);  // warm-up: oneDNN's first calls are slow
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    kernels::Matmul(args);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double flops = 2.0 * n * n * n / best;
  cache[threads] = flops;
  return flops;
}

GpuPeaks GpuPeaksOf(const std::string& name) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has("H100") || has("H200")) return {989.4e12, 66.9e12};  // GH200 too
  if (has("B200")) return {2250e12, 80e12};
  if (has("A100")) return {312e12, 19.5e12};
  return {};
}

std::string CudaDevice0Name() {
  for (const v1::Device& d : daemon::DiscoverCudaDevices()) {
    if (d.index() == 0) return d.name();
  }
  return "";
}

}  // namespace colossal::worker
