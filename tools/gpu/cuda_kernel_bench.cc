// The CUDA twins' speed on the device they run on: each workload below times the twin
// from its dispatch table (the same function a job calls) and prints its rate beside the
// device's peak for that kind of work, one JSON object per line for tools/gpu/check.sh
// (which prints PyTorch's rate for the same workload, tools/gpu/torch_kernel_bench.py,
// beside it):
//   {"kernel": ..., "shape": ..., "ms": ..., "tflops" | "gbps": ..., "peak": ..., "of_peak": ...}
// GEMMs and attention are rated in TFLOP/s (model FLOPs: 2mnk; attention 4·B·H·T²·D
// forward, halved for the causal mask), the rest in GB/s of the bytes they must move
// (each input read once, each output written once). Peaks: the device's HBM bandwidth
// from its memory clock and bus width; dense tensor-core bf16 and fp32 (no TF32: the
// fp32 GEMM is CUBLAS_COMPUTE_32F) from the published figures of the devices named
// below, by name, or "-" for another device.
//
// Timing: one untimed call, then repetitions until 0.2 s have passed (at least 3),
// synchronised once at the end; the figure is the mean call. Inputs are uniform in
// [-1, 1] (ids uniform over the vocabulary), so nothing overflows.
//
// Usage: cuda_kernel_bench [--quick | --peaks] (--quick: smaller shapes, for a first look;
// --peaks: the device line alone, for the other GPU benches).
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/backend_memory.h"
#include "kernels/common/half.h"
#include "kernels/common/kernel.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gelu/gelu.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/matmul/matmul.h"
#include "kernels/optim/adamw.h"
#include "kernels/optim/grad_norm.h"
#include "kernels/softmax_xent/softmax_xent.h"
#include "runtime/worker/device_peak.h"

namespace colossal::kernels {
namespace {

constexpr Stream kStream{Backend::kCuda, nullptr};

struct Peaks {
  double bf16_tflops = 0, fp32_tflops = 0, hbm_gbps = 0;
};

// Compute peaks from the runtime's table by name (runtime/worker/device_peak.h: what MFU
// is measured against); HBM from the device itself.
Peaks DevicePeaks(const cudaDeviceProp& prop, int device) {
  Peaks p;
  const worker::GpuPeaks published = worker::GpuPeaksOf(prop.name);
  p.bf16_tflops = published.bf16_flops / 1e12, p.fp32_tflops = published.fp32_flops / 1e12;
  int clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  p.hbm_gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
  return p;
}

// Device buffer of `n` elements of T, filled from the host.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : bytes_(static_cast<int64_t>(host.size() * sizeof(T))) {
    const BackendMemory* m = FindBackendMemory(Backend::kCuda);
    ptr_ = m->allocate(bytes_);
    m->to_backend(ptr_, host.data(), bytes_);
  }
  ~DeviceArray() { FindBackendMemory(Backend::kCuda)->release(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  int64_t bytes_;
  void* ptr_ = nullptr;
};

std::mt19937 g_rng(1234);
std::vector<float> Uniform(int64_t n) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(g_rng);
  return v;
}
std::vector<uint16_t> UniformBf16(int64_t n) {
  std::vector<float> f = Uniform(n);
  std::vector<uint16_t> v(f.size());
  for (size_t i = 0; i < f.size(); ++i) v[i] = F32ToBf16(f[i]);
  return v;
}
std::vector<float> Zeros(int64_t n) { return std::vector<float>(static_cast<size_t>(n), 0.f); }
std::vector<int32_t> Ids(int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = d(g_rng);
  return v;
}

// Mean seconds per call of `f` (see the top of the file).
double Time(const std::function<void()>& f) {
  const BackendMemory* m = FindBackendMemory(Backend::kCuda);
  f();
  m->synchronize(kStream);
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (reps < 3 || elapsed < 0.2) {
    f();
    ++reps;
    if (reps % 4 == 0 || reps < 4) {
      m->synchronize(kStream);
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  m->synchronize(kStream);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

void PrintFlops(const char* kernel, const std::string& shape, double seconds, double flops, double peak_tflops) {
  const double tflops = flops / seconds / 1e12;
  std::printf("{\"kernel\": \"%s\", \"shape\": \"%s\", \"ms\": %.4f, \"tflops\": %.2f, \"peak\": %.1f, \"of_peak\": %s}\n",
              kernel, shape.c_str(), seconds * 1e3, tflops, peak_tflops,
              peak_tflops > 0 ? std::to_string(tflops / peak_tflops).c_str() : "null");
  std::fflush(stdout);
}
void PrintBytes(const char* kernel, const std::string& shape, double seconds, double bytes, double peak_gbps) {
  const double gbps = bytes / seconds / 1e9;
  std::printf("{\"kernel\": \"%s\", \"shape\": \"%s\", \"ms\": %.4f, \"gbps\": %.1f, \"peak\": %.0f, \"of_peak\": %s}\n",
              kernel, shape.c_str(), seconds * 1e3, gbps, peak_gbps,
              peak_gbps > 0 ? std::to_string(gbps / peak_gbps).c_str() : "null");
  std::fflush(stdout);
}

std::string Dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

void Matmuls(const Peaks& peaks, bool quick) {
  // Square, then GPT-2 124M's shapes at B·T = 8192 tokens: the QKV projection and the MLP's
  // two GEMMs, forward (N·N) and the weight gradient (T·N).
  struct Shape {
    int64_t m, n, k;
    Trans ta, tb;
    const char* what;
  };
  const int64_t s = quick ? 2048 : 8192;
  const std::vector<Shape> shapes = {{s, s, s, Trans::kNo, Trans::kNo, "square"},
                                     {8192, 2304, 768, Trans::kNo, Trans::kNo, "gpt2 qkv fwd"},
                                     {8192, 3072, 768, Trans::kNo, Trans::kNo, "gpt2 fc fwd"},
                                     {8192, 768, 3072, Trans::kNo, Trans::kNo, "gpt2 proj fwd"},
                                     {768, 3072, 8192, Trans::kYes, Trans::kNo, "gpt2 fc dW"}};
  for (const Shape& sh : shapes) {
    const int64_t a_rows = sh.ta == Trans::kNo ? sh.m : sh.k, a_cols = sh.ta == Trans::kNo ? sh.k : sh.m;
    const int64_t b_rows = sh.tb == Trans::kNo ? sh.k : sh.n, b_cols = sh.tb == Trans::kNo ? sh.n : sh.k;
    const std::string shape = std::string(sh.what) + " " + Dims({sh.m, sh.n, sh.k}) +
                              (sh.ta == Trans::kYes ? " At" : "") + (sh.tb == Trans::kYes ? " Bt" : "");
    const double flops = 2.0 * sh.m * sh.n * sh.k;
    DeviceArray<float> c(std::vector<float>(static_cast<size_t>(sh.m * sh.n), 0.f));
    {
      DeviceArray<uint16_t> a(UniformBf16(a_rows * a_cols)), b(UniformBf16(b_rows * b_cols));
      MatmulLowArgs args{sh.ta, sh.tb, sh.m, sh.n, sh.k, a.get(), a_cols, b.get(), b_cols, c.get(), sh.n};
      auto* fn = MatmulLowTable().Get(Backend::kCuda, DType::kBF16);
      PrintFlops("matmul_low bf16", shape, Time([&] { fn(args, kStream); }), flops, peaks.bf16_tflops);
    }
    if (std::string(sh.what) == "square" || std::string(sh.what) == "gpt2 fc fwd") {
      DeviceArray<float> a(Uniform(a_rows * a_cols)), b(Uniform(b_rows * b_cols));
      MatmulArgs args{sh.ta, sh.tb, sh.m, sh.n, sh.k, a.get(), a_cols, b.get(), b_cols, c.get(), sh.n};
      auto* fn = MatmulTable().Get(Backend::kCuda, DType::kF32);
      PrintFlops("matmul fp32", shape, Time([&] { fn(args, kStream); }), flops, peaks.fp32_tflops);
    }
  }
}

void Attention(const Peaks& peaks, bool quick) {
  const int64_t B = quick ? 2 : 8, T = 1024, H = 12, D = 64, C = H * D;
  const AttentionShape shape{B, T, H, D};
  const double flops = 4.0 * B * H * T * T * D / 2;  // causal: half the score matrix
  const std::string dims = Dims({B, T, H, D}) + " (B,T,H,D)";
  DeviceArray<float> qkv(Uniform(B * T * 3 * C)), out(Zeros(B * T * C));
  {
    DeviceArray<float> probs(Zeros(B * H * T * T));
    auto* fwd = AttentionForwardTable().Get(Backend::kCuda, DType::kF32);
    PrintFlops("attention fwd", dims, Time([&] { fwd(qkv.get(), out.get(), probs.get(), shape, kStream); }), flops,
               peaks.fp32_tflops);
    DeviceArray<float> dout(Uniform(B * T * C)), dqkv(Zeros(B * T * 3 * C));
    auto* bwd = AttentionBackwardTable().Get(Backend::kCuda, DType::kF32);
    PrintFlops("attention bwd", dims,
               Time([&] { bwd(dout.get(), qkv.get(), probs.get(), dqkv.get(), shape, Accumulate::kNo, kStream); }),
               2.5 * flops, peaks.fp32_tflops);
  }
  BlockAttentionShape bs;
  bs.batch = B, bs.heads = H, bs.head_dim = D, bs.q_len = T, bs.kv_len = T;
  bs.q_stride = 3 * C, bs.kv_stride = 3 * C, bs.out_stride = C;
  DeviceArray<float> lse(Zeros(B * H * T));
  auto* bfwd = BlockAttentionForwardTable().Get(Backend::kCuda, DType::kF32);
  const float* q = qkv.get();
  PrintFlops("block attention fwd", dims,
             Time([&] { bfwd(q, q + C, q + 2 * C, out.get(), lse.get(), true, bs, kStream); }), flops,
             peaks.fp32_tflops);
}

void Bandwidth(const Peaks& peaks, bool quick) {
  const int64_t n = quick ? (int64_t{1} << 24) : (int64_t{1} << 27);  // 64 Mi / 512 MiB of fp32
  {
    DeviceArray<float> a(Uniform(n)), b(Uniform(n)), c(Zeros(n));
    auto* add = AddTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("add", Dims({n}), Time([&] { add(a.get(), b.get(), c.get(), n, kStream); }), 12.0 * n, peaks.hbm_gbps);
    auto* gelu = GeluForwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("gelu fwd", Dims({n}), Time([&] { gelu(a.get(), c.get(), n, kStream); }), 8.0 * n, peaks.hbm_gbps);
    DeviceArray<double> sum(std::vector<double>{0.0});
    auto* sq = SumSquaresTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("sum of squares", Dims({n}), Time([&] { sq(a.get(), n, sum.get(), kStream); }), 4.0 * n,
               peaks.hbm_gbps);
  }
  {
    // AdamW over GPT-2 124M's parameters: w, g, m, v read, w, m, v written.
    const int64_t p = quick ? (int64_t{1} << 22) : 124'439'808;
    DeviceArray<float> w(Uniform(p)), g(Uniform(p)), m(Zeros(p)),
        v(Zeros(p));
    AdamWArgs args;
    args.w = w.get(), args.g = g.get(), args.m = m.get(), args.v = v.get(), args.n = p, args.lr = 1e-4f;
    args.weight_decay = 0.1f;
    auto* step = AdamWStepTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("adamw", Dims({p}), Time([&] { step(args, kStream); }), 28.0 * p, peaks.hbm_gbps);
  }
  {
    const int64_t rows = quick ? 4096 : 16384, cols = 768;
    DeviceArray<float> x(Uniform(rows * cols)), w(Uniform(cols)), b(Uniform(cols)),
        y(Zeros(rows * cols)), mean(Zeros(rows)),
        rstd(Zeros(rows));
    auto* ln = LayerNormForwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("layer_norm fwd", Dims({rows, cols}),
               Time([&] { ln(x.get(), w.get(), b.get(), y.get(), mean.get(), rstd.get(), rows, cols, 1e-5f, kStream); }),
               8.0 * rows * cols, peaks.hbm_gbps);
    DeviceArray<float> dy(Uniform(rows * cols)), dx(Zeros(rows * cols)),
        dw(Zeros(cols)), db(Zeros(cols));
    auto* lnb = LayerNormBackwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("layer_norm bwd", Dims({rows, cols}), Time([&] {
                 lnb(dy.get(), x.get(), w.get(), mean.get(), rstd.get(), dx.get(), dw.get(), db.get(), rows, cols,
                     Accumulate::kNo, Accumulate::kNo, kStream);
               }),
               12.0 * rows * cols, peaks.hbm_gbps);
  }
  {
    // The LM head's loss at GPT-2's padded vocabulary: logits read once forward, read and
    // the gradient written backward.
    const int64_t n = quick ? 2048 : 8192, vocab = 50304;
    DeviceArray<float> logits(Uniform(n * vocab)), loss(Zeros(n)), lse(Zeros(n)),
        dloss(std::vector<float>(static_cast<size_t>(n), 1.0f / n)),
        dlogits(Zeros(n * vocab));
    DeviceArray<int32_t> targets(Ids(n, vocab));
    auto* fwd = SoftmaxXentForwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("softmax_xent fwd", Dims({n, vocab}),
               Time([&] { fwd(logits.get(), vocab, targets.get(), loss.get(), lse.get(), n, vocab, kStream); }),
               4.0 * n * vocab, peaks.hbm_gbps);
    auto* bwd = SoftmaxXentBackwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("softmax_xent bwd", Dims({n, vocab}), Time([&] {
                 bwd(logits.get(), vocab, lse.get(), targets.get(), dloss.get(), dlogits.get(), n, vocab,
                     Accumulate::kNo, kStream);
               }),
               8.0 * n * vocab, peaks.hbm_gbps);
  }
  {
    const int64_t n = quick ? 2048 : 8192, rows = 50304, c = 768;
    DeviceArray<int32_t> ids(Ids(n, rows));
    DeviceArray<float> table(Uniform(rows * c)), out(Zeros(n * c));
    auto* fwd = EmbeddingForwardTable().Get(Backend::kCuda, DType::kF32);
    PrintBytes("embedding fwd", Dims({n, rows, c}), Time([&] { fwd(ids.get(), table.get(), out.get(), n, rows, c, kStream); }),
               8.0 * n * c, peaks.hbm_gbps);
  }
}

}  // namespace
}  // namespace colossal::kernels

int main(int argc, char** argv) {
  using namespace colossal::kernels;
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const bool peaks_only = argc > 1 && std::strcmp(argv[1], "--peaks") == 0;
  if (FindBackendMemory(Backend::kCuda) == nullptr) {
    std::fprintf(stderr, "cuda_kernel_bench: no CUDA device in this process\n");
    return 1;
  }
  int device = 0;
  cudaGetDevice(&device);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  const Peaks peaks = DevicePeaks(prop, device);
  std::printf("{\"device\": \"%s\", \"sm\": \"%d.%d\", \"sms\": %d, \"memory_gib\": %.1f, \"hbm_gbps\": %.0f, "
              "\"bf16_tflops\": %.1f, \"fp32_tflops\": %.1f}\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0,
              peaks.hbm_gbps, peaks.bf16_tflops, peaks.fp32_tflops);
  if (peaks_only) return 0;
  Matmuls(peaks, quick);
  Attention(peaks, quick);
  Bandwidth(peaks, quick);
  return 0;
}
