// Matmul bench: GFLOP/s of the CPU twin (oneDNN dnnl_sgemm) beside OpenBLAS
// cblas_sgemm at the GEMM shapes of a GPT training step, on 1 and 2 threads.
// OpenBLAS picks its kernel ("core") when the library loads, from OPENBLAS_CORETYPE or
// CPU detection, so each OpenBLAS variant runs in a child process: this binary re-run
// with --openblas-only [--shape=i] under that environment. The parent times oneDNN
// itself, shape by shape beside the children, and prints one table per thread count
// with the ratio oneDNN / best OpenBLAS.
//   bazel run //kernels/matmul:matmul_bench [-- --quick] [--rounds=N] [--threads=T]
#include <omp.h>
#include <openblas-pthread/cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "kernels/testing/bench_timing.h"

namespace {

using colossal::kernels::testing::BestSeconds;

using colossal::kernels::Trans;

struct Shape {
  const char* what;
  Trans ta, tb;
  int64_t m, n, k;
};

// Weights stored [in, out] (Y = X·W): forward NN, dX = dY·Wᵀ is NT (m×in×out), dW = Xᵀ·dY
// is TN (in×out×m). The tied LM head stores wte [V, C]: logits = X·wteᵀ (NT),
// dX = dlogits·wte (NN), dwte = dlogitsᵀ·X (TN, V×C×m).
std::vector<Shape> Shapes(bool quick) {
  const Trans N = Trans::kNo, T = Trans::kYes;
  std::vector<Shape> s;
  auto linear = [&](const char* what, int64_t m, int64_t in, int64_t out) {
    s.push_back({what, N, N, m, out, in});
    s.push_back({"  dX", N, T, m, in, out});
    s.push_back({"  dW", T, N, in, out, m});
  };
  auto head = [&](int64_t m, int64_t c, int64_t v) {
    s.push_back({"lm_head", N, T, m, v, c});
    s.push_back({"  dX", N, N, m, c, v});
    s.push_back({"  dwte", T, N, v, c, m});
  };
  // GPT-2 124M, B·T = 256 rows, C = 768, V = 50257.
  linear("gpt2 qkv", 256, 768, 2304);
  linear("gpt2 attn_proj", 256, 768, 768);
  if (!quick) {
    linear("gpt2 fc", 256, 768, 3072);
    linear("gpt2 fc_proj", 256, 3072, 768);
  }
  head(256, 768, 50257);
  // Small model, B·T = 2048 rows, C = 384, V = 256.
  linear("small qkv", 2048, 384, 1152);
  if (!quick) {
    linear("small attn_proj", 2048, 384, 384);
    linear("small fc", 2048, 384, 1536);
    linear("small fc_proj", 2048, 1536, 384);
  }
  head(2048, 384, 256);
  s.push_back({"square 2048^3", N, N, 2048, 2048, 2048});
  return s;
}

struct Buffers {
  std::vector<float> a, b, c;
  explicit Buffers(const std::vector<Shape>& shapes) {
    size_t a_n = 0, b_n = 0, c_n = 0;
    for (const Shape& s : shapes) {
      a_n = std::max<size_t>(a_n, s.m * s.k);
      b_n = std::max<size_t>(b_n, s.k * s.n);
      c_n = std::max<size_t>(c_n, s.m * s.n);
    }
    a.resize(a_n);
    b.resize(b_n);
    c.resize(c_n);
    // Values in [-1, 1) from a cheap integer hash (speed does not depend on them).
    uint32_t state = 12345;
    for (float& x : a) x = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) * 0x1p-23f - 1.0f;
    for (float& x : b) x = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) * 0x1p-23f - 1.0f;
  }
};

double Gflops(const Shape& s, double seconds) { return 2e-9 * s.m * s.n * s.k / seconds; }

double TimeOneDnn(const Shape& s, Buffers& buf) {
  colossal::kernels::MatmulArgs p;
  p.trans_a = s.ta;
  p.trans_b = s.tb;
  p.m = s.m;
  p.n = s.n;
  p.k = s.k;
  p.a = buf.a.data();
  p.lda = s.ta == Trans::kNo ? s.k : s.m;
  p.b = buf.b.data();
  p.ldb = s.tb == Trans::kNo ? s.n : s.k;
  p.c = buf.c.data();
  p.ldc = s.n;
  return BestSeconds([&] { colossal::kernels::Matmul(p); }, 3, 0.3, 30);
}

double TimeOpenBlas(const Shape& s, Buffers& buf) {
  const CBLAS_TRANSPOSE ta = s.ta == Trans::kNo ? CblasNoTrans : CblasTrans;
  const CBLAS_TRANSPOSE tb = s.tb == Trans::kNo ? CblasNoTrans : CblasTrans;
  const blasint lda = s.ta == Trans::kNo ? s.k : s.m;
  const blasint ldb = s.tb == Trans::kNo ? s.n : s.k;
  return BestSeconds([&] {
    cblas_sgemm(CblasRowMajor, ta, tb, s.m, s.n, s.k, 1.0f, buf.a.data(), lda, buf.b.data(),
                ldb, 0.0f, buf.c.data(), s.n);
  }, 3, 0.3, 30);
}

// Child mode: prints "core <name>" then "gflops <index> <value>" for the shape with
// that index (or for all shapes when index < 0).
int OpenBlasOnly(int threads, bool quick, int only) {
  openblas_set_num_threads(threads);
  std::printf("core %s\n", openblas_get_corename());
  std::fflush(stdout);
  const auto all = Shapes(quick);
  std::vector<Shape> mine;
  for (size_t i = 0; i < all.size(); ++i) {
    if (only < 0 || static_cast<size_t>(only) == i) mine.push_back(all[i]);
  }
  Buffers buf(mine);
  for (size_t i = 0; i < all.size(); ++i) {
    if (only >= 0 && static_cast<size_t>(only) != i) continue;
    std::printf("gflops %zu %.2f\n", i, Gflops(all[i], TimeOpenBlas(all[i], buf)));
    std::fflush(stdout);
  }
  return 0;
}

struct Variant {
  std::string label;  // column header
  std::string core;   // what OpenBLAS reported
  std::vector<double> gflops;
};

// Runs this binary in child mode for one shape under the given OPENBLAS_CORETYPE
// ("" = unset: OpenBLAS's own detection); fills v.core and v.gflops[shape].
void RunChild(const std::string& self, const std::string& coretype, int threads, bool quick,
              size_t shape, Variant& v) {
  std::string cmd = coretype.empty() ? "env -u OPENBLAS_CORETYPE"
                                     : "env OPENBLAS_CORETYPE=" + coretype;
  cmd += " OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=" + std::to_string(threads) + " '" + self +
         "' --openblas-only --threads=" + std::to_string(threads) +
         " --shape=" + std::to_string(shape) + (quick ? " --quick" : "");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    std::fprintf(stderr, "cannot run: %s\n", cmd.c_str());
    return;
  }
  char line[512];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    char name[128];
    size_t index;
    double value;
    if (std::sscanf(line, "core %127s", name) == 1) v.core = name;
    if (std::sscanf(line, "gflops %zu %lf", &index, &value) == 2 && index < v.gflops.size()) {
      v.gflops[index] = std::max(v.gflops[index], value);
    }
  }
  pclose(pipe);
}

}  // namespace

int main(int argc, char** argv) {
  bool openblas_only = false, quick = false;
  int rounds = 1, only_shape = -1;
  std::vector<int> thread_counts = {1, 2};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--openblas-only") == 0) openblas_only = true;
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strncmp(argv[i], "--shape=", 8) == 0) only_shape = std::atoi(argv[i] + 8);
    if (std::strncmp(argv[i], "--rounds=", 9) == 0) rounds = std::max(1, std::atoi(argv[i] + 9));
    if (std::strncmp(argv[i], "--threads=", 10) == 0) thread_counts = {std::atoi(argv[i] + 10)};
  }
  if (openblas_only) return OpenBlasOnly(thread_counts[0], quick, only_shape);

  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) {
    std::fprintf(stderr, "cannot resolve /proc/self/exe\n");
    return 1;
  }
  self[len] = '\0';
  const auto shapes = Shapes(quick);
  Buffers buf(shapes);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char load[128] = {0};
    if (std::fgets(load, sizeof(load), f) != nullptr) std::printf("loadavg at start: %s", load);
    std::fclose(f);
  }
  std::printf("OPENBLAS_CORETYPE in this environment: %s\n",
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)");

  // Libraries are measured shape by shape, back to back (oneDNN here, then each OpenBLAS
  // core in a child), so they see the same background load; a cell keeps its best
  // round, so a burst of load from other processes does not decide the comparison.
  const std::vector<std::string> coretypes = {"", "SkylakeX", "Haswell"};
  std::map<int, std::vector<double>> dnnl;
  std::map<int, std::vector<Variant>> openblas;
  for (int threads : thread_counts) {
    dnnl[threads].assign(shapes.size(), 0.0);
    for (const std::string& coretype : coretypes) {
      Variant v;
      v.label = coretype.empty() ? "OB auto" : "OB " + coretype;
      v.gflops.assign(shapes.size(), 0.0);
      openblas[threads].push_back(v);
    }
  }
  for (int round = 0; round < rounds; ++round) {
    for (int threads : thread_counts) {
      std::fprintf(stderr, "round %d threads %d\n", round + 1, threads);
      for (size_t i = 0; i < shapes.size(); ++i) {
        omp_set_num_threads(threads);
        dnnl[threads][i] =
            std::max(dnnl[threads][i], Gflops(shapes[i], TimeOneDnn(shapes[i], buf)));
        for (size_t v = 0; v < coretypes.size(); ++v) {
          RunChild(self, coretypes[v], threads, quick, i, openblas[threads][v]);
        }
      }
    }
  }

  for (int threads : thread_counts) {
    const auto& variants = openblas[threads];
    std::printf("\nthreads=%d  (GFLOP/s, best of %d rounds; OpenBLAS cores:", threads, rounds);
    for (const Variant& v : variants) std::printf(" %s=%s", v.label.c_str(), v.core.c_str());
    std::printf(")\n%-16s %2s %6s %6s %6s %8s", "shape", "op", "m", "n", "k", "oneDNN");
    for (const Variant& v : variants) std::printf(" %12s", v.label.c_str());
    std::printf(" %9s\n", "ratio");
    double flop_total = 0, t_dnnl = 0, t_best = 0;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      double best = 0;
      for (const Variant& v : variants) best = std::max(best, v.gflops[i]);
      std::printf("%-16s %c%c %6lld %6lld %6lld %8.1f", s.what, s.ta == Trans::kYes ? 'T' : 'N',
                  s.tb == Trans::kYes ? 'T' : 'N', static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), dnnl[threads][i]);
      for (const Variant& v : variants) std::printf(" %12.1f", v.gflops[i]);
      std::printf(" %9.2f\n", best > 0 ? dnnl[threads][i] / best : 0.0);
      if (s.m == 2048 && s.n == 2048) continue;  // the square is not part of a step
      const double gf = 2e-9 * s.m * s.n * s.k;
      flop_total += gf;
      t_dnnl += gf / dnnl[threads][i];
      t_best += best > 0 ? gf / best : 0;
    }
    // Time-weighted over the step shapes: total FLOP / total time, as a step sees it.
    std::printf("step shapes, time-weighted: oneDNN %.1f GFLOP/s, best OpenBLAS per shape "
                "%.1f GFLOP/s, ratio %.2f\n",
                flop_total / t_dnnl, flop_total / t_best, t_best / t_dnnl);
  }
  return 0;
}
