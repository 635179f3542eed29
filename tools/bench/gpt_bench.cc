// GPT training-step benchmark: colossal against PyTorch (Debian python3-torch) on the
// same models, thread counts, precisions and machine, in one run, with the fp32 sgemm
// peak of the BLAS colossal uses beside them.
//
// Both peers run as child processes, alternately, for `--rounds` rounds; each round
// reports the median step time of its timed steps and the table keeps each side's best
// round (the machine may be shared: the best round is the least disturbed one).
//   colossal: `colossal run` of a generated job (AdamW, no checkpoints), step_ms
//             read from its metrics.jsonl; the step includes the gradient norm and
//             clipping, which PyTorch's loop below does not do.
//   PyTorch:  tools/bench/torch_gpt_bench.py (zero_grad, forward, loss, backward,
//             AdamW step) under its best settings: tcmalloc preloaded,
//             OMP_WAIT_POLICY=PASSIVE, OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = threads,
//             and each OPENBLAS_CORETYPE in --torch-cores (Debian's OpenBLAS may
//             mis-detect the CPU; the best core is kept).
// --precision fp32,bf16 runs each model and thread count in each precision: colossal's
// train.precision (GEMM operands rounded to bf16, fp32 accumulation, master weights and
// optimizer: oneDNN's bf16 matmul where the CPU has AVX512-BF16 or AMX, widened to fp32
// sgemm elsewhere) against PyTorch under torch.autocast("cpu", bfloat16); the bf16 rows
// also print their step time over the fp32 row's (each peer's own).
// MFU = model FLOPs per step (B·T·(6N + 12·L·T·C)) / step time / the sgemm peak at
// that thread count (oneDNN, 2048³, best of 5).
//
// Usage (from the repository root, after tools/setup.sh):
//   bazel run -c opt //tools/bench:gpt_bench -- [--models 124m,small] [--threads 1,2]
//       [--steps 5] [--warmup 2] [--rounds 2] [--torch-cores auto,SkylakeX,Haswell]
//       [--no-torch] [--dp] [--recompute] [--precision fp32,bf16] [--track 200]
// --recompute adds the activation-checkpointing table: each model of --models (kjv is the
// default job's) with and without recomputing every layer, both peers, step time and
// peak resident memory.
// --track N trains the default job (configs/gpt-kjv.yaml) for N steps three times, on
// --threads' first count: fp32, bf16, and fp32 with another seed, and prints how far the
// bf16 run's per-step losses and validation losses are from the fp32 run's beside how far
// the second fp32 run's are (the run-to-run spread a different initialisation and data
// order give: what "tracks fp32" is measured against).
// --dp adds the data-parallel table: the small model on 1 rank × 1 and 2 threads and on
// 2 ranks × 1 thread (ZeRO 0 and 1), with the efficiency of the 2-rank step against the
// 1-rank × 2-thread one (same cores).
#include <dnnl.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;

struct Losses {
  std::map<int, double> train, val;  // by step
};

// The per-step "loss" and "val_loss" records of a metrics.jsonl.
Losses ReadLosses(const fs::path& metrics_file) {
  Losses out;
  std::ifstream metrics(metrics_file);
  std::string line;
  while (std::getline(metrics, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step")) continue;
    if (j.contains("loss")) out.train[j["step"].get<int>()] = j["loss"].get<double>();
    if (j.contains("val_loss")) out.val[j["step"].get<int>()] = j["val_loss"].get<double>();
  }
  return out;
}

struct Model {
  std::string key, label;
  int n_layer, n_head, d_model, vocab, seq_len, batch;
  double goal;  // target ratio colossal / PyTorch at 2 threads
};

const std::vector<Model> kModels = {
    {"124m", "GPT-2 124M (12L d768 V50257) B=4 T=64", 12, 12, 768, 50257, 64, 4, 0.85},
    {"small", "small (6L d384 V256) B=8 T=256", 6, 6, 384, 256, 256, 8, 0.70},
    {"kjv", "default job (4L d256 V256) B=32 T=128", 4, 4, 256, 256, 128, 32, 0},
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Peak resident set of the last child RunChild waited for, and of its descendants
// (getrusage's maxrss of the child's tree), in MiB.
double g_child_rss_mib = 0;

// Runs `argv` with extra environment `env`, stdout captured; returns (exit code, stdout).
std::pair<int, std::string> RunChild(const std::vector<std::string>& argv,
                                     const std::map<std::string, std::string>& env) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {-1, ""};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(pipefd[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  g_child_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double ModelFlopsPerStep(const Model& m) {
  const double C = m.d_model;
  const double per_layer = 12 * C * C + 13 * C;
  const double n = m.vocab * C + m.n_layer * per_layer + 2 * C;  // all but wpe
  const double tokens = static_cast<double>(m.batch) * m.seq_len;
  return tokens * (6 * n + 12.0 * m.n_layer * m.seq_len * C);
}

const char* CpuIsaName() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
  }
}

double SgemmPeak(int threads) {
  omp_set_num_threads(threads);
  const int n = 2048;
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    dnnl_sgemm('N', 'N', n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / best;
}

// One colossal round: median step ms of the timed steps, or NaN. `ranks` > 1 runs
// data-parallel ranks (one process each, UCX between them) with `threads` each.
double RunColossal(const std::string& binary, const std::string& corpus, const fs::path& work,
                   const Model& m, int threads, int warmup, int steps, int ranks = 1, int zero = 0,
                   bool recompute = false, const std::string& precision = "fp32") {
  const fs::path run_dir = work / ("run-" + m.key + "-" + std::to_string(threads) + "-" + std::to_string(ranks));
  fs::remove_all(run_dir);
  const fs::path job = work / ("job-" + m.key + ".yaml");
  std::ofstream(job) << "name: bench-" << m.key << "\n"
                     << "run_dir: " << run_dir.string() << "\n"
                     << "model: {type: gpt, n_layer: " << m.n_layer << ", n_head: " << m.n_head
                     << ", d_model: " << m.d_model << ", seq_len: " << m.seq_len
                     << ", vocab: " << m.vocab << "}\n"
                     << "data: {train: " << corpus << ", val_fraction: 0.0}\n"
                     << "train:\n  steps: " << warmup + steps << "\n  global_batch: " << m.batch
                     << "\n  micro_batch: " << m.batch / ranks
                     << "\n  optimizer: {type: adamw, lr: 6.0e-4, weight_decay: 0.1, no_decay: [bias, ln_]}"
                     << "\n  grad_clip: 1.0\n  precision: " << precision << "\n"
                     << "parallel: {data: " << ranks << ", zero: " << zero << "}\n"
                     << "resources: {ranks_per_node: " << ranks << "}\n"
                     << "memory: {activation_checkpointing: " << (recompute ? "true" : "false") << "}\n";
  auto [rc, out] = RunChild({binary, "run", job.string(), "--threads", std::to_string(threads),
                             "--no-resume", "--no-checkpoints"},
                            {{"COLOSSAL_PROGRESS", "0"}, {"COLOSSAL_LOG_LEVEL", "warn"}});
  if (rc != 0) {
    std::fprintf(stderr, "colossal run failed (exit %d)\n", rc);
    return NAN;
  }
  std::ifstream metrics(run_dir / "metrics.jsonl");
  std::vector<double> ms;
  std::string line;
  while (std::getline(metrics, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step_ms") && j["step"].get<int>() > warmup) {
      ms.push_back(j["step_ms"].get<double>());
    }
  }
  return Median(ms);
}

double RunTorch(const std::string& script, const Model& m, int threads, int warmup, int steps,
                const std::string& core, bool checkpoint = false,
                const std::string& precision = "fp32") {
  std::map<std::string, std::string> env = {
      {"LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"},
      {"OMP_WAIT_POLICY", "PASSIVE"},
      {"OMP_NUM_THREADS", std::to_string(threads)},
      {"OPENBLAS_NUM_THREADS", std::to_string(threads)}};
  if (core != "auto") env["OPENBLAS_CORETYPE"] = core;
  auto [rc, out] = RunChild({"/usr/bin/python3", script, "--n_layer", std::to_string(m.n_layer),
                             "--n_head", std::to_string(m.n_head), "--d_model",
                             std::to_string(m.d_model), "--vocab", std::to_string(m.vocab),
                             "--seq_len", std::to_string(m.seq_len), "--batch",
                             std::to_string(m.batch), "--threads", std::to_string(threads),
                             "--warmup", std::to_string(warmup), "--steps", std::to_string(steps),
                             "--autocast", precision == "bf16" ? "bf16" : "none", "--json",
                             checkpoint ? "--checkpoint" : "--json"},
                            env);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || !j.is_object() || !j.contains("step_ms_median")) {
    std::fprintf(stderr, "torch bench failed (exit %d)\n", rc);
    return NAN;
  }
  return j["step_ms_median"].get<double>();
}

}  // namespace

int main(int argc, char** argv) {
  std::string models = "124m,small", thread_list = "1,2", cores = "auto,SkylakeX,Haswell";
  std::string precisions = "fp32";
  int steps = 5, warmup = 2, rounds = 2;
  bool torch = true, dp = false, recompute = false;
  int track = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--models") models = next();
    else if (a == "--threads") thread_list = next();
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--warmup") warmup = std::atoi(next().c_str());
    else if (a == "--rounds") rounds = std::atoi(next().c_str());
    else if (a == "--torch-cores") cores = next();
    else if (a == "--no-torch") torch = false;
    else if (a == "--dp") dp = true;
    else if (a == "--recompute") recompute = true;
    else if (a == "--precision") precisions = next();
    else if (a == "--track") track = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  // Under `bazel run` the working directory is the runfiles tree; the workspace holds data/.
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  const fs::path root = ws ? fs::path(ws) : fs::current_path();
  // Files come from the runfiles tree (bazel run) or from the workspace (bazel-bin/...).
  const fs::path runfiles = fs::path(std::string(argv[0]) + ".runfiles") / "colossal";
  const fs::path base = fs::exists("colossal") ? fs::current_path()
                        : fs::exists(runfiles / "colossal") ? runfiles
                                                            : root / "bazel-bin";
  const std::string binary = fs::absolute(base / "colossal").string();
  const std::string script = (root / "tools/bench/torch_gpt_bench.py").string();
  const std::string corpus = (root / "data/kjv.txt").string();
  if (!fs::exists(binary) || !fs::exists(corpus)) {
    std::fprintf(stderr, "run from the repository root via bazel run, after tools/setup.sh\n");
    return 2;
  }
  const fs::path work = fs::temp_directory_path() / ("colossal-gpt-bench-" + std::to_string(getpid()));
  fs::create_directories(work);

  for (const std::string& p : Split(precisions)) {
    if (p != "fp32" && p != "bf16") {
      std::fprintf(stderr, "unknown precision %s (fp32, bf16)\n", p.c_str());
      return 2;
    }
  }
  std::printf("GPT training step, AdamW; best of %d rounds, median of %d timed steps after %d warm-up\n",
              rounds, steps, warmup);
  std::printf("oneDNN CPU ISA: %s (native bf16 GEMMs need avx512_core_bf16 or amx)\n", CpuIsaName());
  std::printf("%-40s %4s %3s | %9s %8s %5s | %9s %8s %5s %-9s | %6s %5s | %9s | %s\n", "model", "prec",
              "thr", "ours ms", "tok/s", "MFU", "torch ms", "tok/s", "MFU", "(core)", "ratio", "goal",
              "peak GF/s", "vs fp32 (ours, torch)");
  for (const std::string& key : Split(models)) {
    auto it = std::find_if(kModels.begin(), kModels.end(), [&](const Model& m) { return m.key == key; });
    if (it == kModels.end()) {
      std::fprintf(stderr, "unknown model %s (124m, small, kjv)\n", key.c_str());
      return 2;
    }
    const Model& m = *it;
    for (const std::string& t : Split(thread_list)) {
      const int threads = std::atoi(t.c_str());
      const double peak = SgemmPeak(threads);
      double fp32_ours = NAN, fp32_theirs = NAN;
      for (const std::string& precision : Split(precisions)) {
        double ours = INFINITY, theirs = INFINITY;
        std::string best_core = "-";
        for (int r = 0; r < rounds; ++r) {
          ours = std::min(ours, RunColossal(binary, corpus, work, m, threads, warmup, steps, 1, 0, false, precision));
          if (!torch) continue;
          for (const std::string& core : Split(cores)) {
            double ms = RunTorch(script, m, threads, warmup, steps, core, false, precision);
            if (ms < theirs) theirs = ms, best_core = core;
          }
        }
        const double flops = ModelFlopsPerStep(m);
        const double tokens = static_cast<double>(m.batch) * m.seq_len;
        auto mfu = [&](double ms) { return flops / (ms * 1e-3) / peak; };
        std::string vs = "-";
        if (precision == "fp32") {
          fp32_ours = ours, fp32_theirs = theirs;
        } else if (std::isfinite(fp32_ours)) {
          char buf[64];
          std::snprintf(buf, sizeof(buf), "%.3f, %.3f", ours / fp32_ours, theirs / fp32_theirs);
          vs = buf;
        }
        char goal[16] = "-";
        if (precision == "fp32" && m.goal > 0) std::snprintf(goal, sizeof(goal), "%.2f", m.goal);
        std::printf("%-40s %4s %3d | %9.1f %8.0f %5.2f | %9.1f %8.0f %5.2f %-9s | %6.3f %5s | %9.1f | %s\n",
                    m.label.c_str(), precision.c_str(), threads, ours, tokens / (ours * 1e-3), mfu(ours), theirs,
                    tokens / (theirs * 1e-3), mfu(theirs), ("(" + best_core + ")").c_str(), ours / theirs, goal,
                    peak * 1e-9, vs.c_str());
        std::fflush(stdout);
      }
    }
  }
  std::printf("ratio = colossal step time / PyTorch step time (lower is better; goal at 2 threads, fp32); "
              "MFU over the fp32 sgemm peak in every row; vs fp32 = the bf16 step time over the same peer's fp32 one\n");
  if (dp) {
    const Model& m = kModels[1];
    std::printf("\ndata parallel, %s (global batch %d), best of %d rounds\n", m.label.c_str(), m.batch, rounds);
    std::printf("%-24s | %9s %9s | %s\n", "ranks x threads", "step ms", "tok/s", "efficiency vs 1x2");
    const double tokens = static_cast<double>(m.batch) * m.seq_len;
    double base = NAN;
    for (auto [ranks, threads, zero] : {std::tuple{1, 1, 0}, std::tuple{1, 2, 0}, std::tuple{2, 1, 0},
                                        std::tuple{2, 1, 1}}) {
      double best = INFINITY;
      for (int r = 0; r < rounds; ++r) {
        best = std::min(best, RunColossal(binary, corpus, work, m, threads, warmup, steps, ranks, zero));
      }
      if (ranks == 1 && threads == 2) base = best;
      std::printf("%-24s | %9.1f %9.0f | %s\n",
                  (std::to_string(ranks) + " x " + std::to_string(threads) + (ranks > 1 ? " zero " + std::to_string(zero) : "")).c_str(),
                  best, tokens / (best * 1e-3),
                  ranks > 1 && std::isfinite(base) ? std::to_string(base / best).substr(0, 5).c_str() : "-");
    }
  }
  if (recompute) {
    // Activation checkpointing: every transformer layer recomputed in the backward
    // (colossal: memory.activation_checkpointing: true; PyTorch: torch.utils.checkpoint
    // per block), the time it adds and the peak resident memory it saves, same run.
    const int threads = std::atoi(Split(thread_list).front().c_str());
    const std::string core = Split(cores).front();
    std::printf("\nactivation checkpointing (every layer), %d thread(s), best of %d rounds; RSS = peak resident MiB of "
                "the training process tree\n", threads, rounds);
    std::printf("%-40s | %8s %8s %6s %8s %8s %7s | %8s %8s %6s %8s %8s %7s\n", "model", "ours ms", "+ckpt", "time+",
                "RSS", "+ckpt", "saved", "torch ms", "+ckpt", "time+", "RSS", "+ckpt", "saved");
    for (const std::string& key : Split(models)) {
      auto it = std::find_if(kModels.begin(), kModels.end(), [&](const Model& m) { return m.key == key; });
      if (it == kModels.end()) continue;
      const Model& m = *it;
      double ms[2][2], rss[2][2];  // [peer][checkpointing]
      for (auto& row : ms) row[0] = row[1] = INFINITY;
      for (auto& row : rss) row[0] = row[1] = INFINITY;
      for (int r = 0; r < rounds; ++r) {
        for (int ck = 0; ck < 2; ++ck) {
          ms[0][ck] = std::min(ms[0][ck], RunColossal(binary, corpus, work, m, threads, warmup, steps, 1, 0, ck == 1));
          rss[0][ck] = std::min(rss[0][ck], g_child_rss_mib);
          if (!torch) continue;
          ms[1][ck] = std::min(ms[1][ck], RunTorch(script, m, threads, warmup, steps, core, ck == 1));
          rss[1][ck] = std::min(rss[1][ck], g_child_rss_mib);
        }
      }
      std::printf("%-40s | %8.1f %8.1f %5.1f%% %8.1f %8.1f %7.1f | %8.1f %8.1f %5.1f%% %8.1f %8.1f %7.1f\n",
                  m.label.c_str(), ms[0][0], ms[0][1], 100 * (ms[0][1] / ms[0][0] - 1), rss[0][0], rss[0][1],
                  rss[0][0] - rss[0][1], ms[1][0], ms[1][1], 100 * (ms[1][1] / ms[1][0] - 1), rss[1][0], rss[1][1],
                  rss[1][0] - rss[1][1]);
      std::fflush(stdout);
    }
  }
  if (track > 0) {
    // The default job as users run it (LAMB, warm-up, cosine decay, validation), with its
    // checkpoints off; steps, validation cadence and the precision or seed changed.
    const int threads = std::atoi(Split(thread_list).front().c_str());
    struct Run {
      std::string label, precision;
      int seed;
      Losses losses;
    };
    std::vector<Run> runs = {{"fp32", "fp32", 1234, {}}, {"bf16", "bf16", 1234, {}}, {"fp32 seed 1235", "fp32", 1235, {}}};
    std::printf("\ndefault job (configs/gpt-kjv.yaml), %d steps, val every %d, %d thread(s)\n", track,
                std::max(1, track / 4), threads);
    for (Run& run : runs) {
      const fs::path run_dir = work / ("track-" + run.precision + "-" + std::to_string(run.seed));
      fs::remove_all(run_dir);
      auto t0 = std::chrono::steady_clock::now();
      auto [rc, out] = RunChild({binary, "run", (root / "configs/gpt-kjv.yaml").string(), "--threads",
                                 std::to_string(threads), "--no-resume", "--no-checkpoints", "--set",
                                 "run_dir=" + run_dir.string(), "--set", "data.train=" + corpus, "--set",
                                 "train.steps=" + std::to_string(track), "--set",
                                 "train.val_every=" + std::to_string(std::max(1, track / 4)), "--set",
                                 "train.precision=" + run.precision, "--set", "train.seed=" + std::to_string(run.seed),
                                 "--set", "sample.tokens=0"},
                                {{"COLOSSAL_PROGRESS", "0"}, {"COLOSSAL_LOG_LEVEL", "warn"}});
      if (rc != 0) {
        std::fprintf(stderr, "colossal run (%s) failed (exit %d)\n", run.label.c_str(), rc);
        fs::remove_all(work);
        return 1;
      }
      run.losses = ReadLosses(run_dir / "metrics.jsonl");
      std::printf("  %-16s %5.0f s, final loss %.4f\n", run.label.c_str(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                  run.losses.train.empty() ? NAN : run.losses.train.rbegin()->second);
      std::fflush(stdout);
    }
    // Differences from the fp32 run: per-step loss (max, mean over all steps, mean over the
    // last quarter, where the learning rate has decayed) and each validation loss.
    auto compare = [&](const Run& other) {
      const Losses& a = runs[0].losses;
      const Losses& b = other.losses;
      double max_d = 0, sum_d = 0, sum_tail = 0;
      int n = 0, n_tail = 0, max_step = -1;
      for (const auto& [step, la] : a.train) {
        auto it = b.train.find(step);
        if (it == b.train.end()) continue;
        const double d = std::fabs(it->second - la);
        if (d > max_d) max_d = d, max_step = step;
        sum_d += d, ++n;
        if (step > track - track / 4) sum_tail += d, ++n_tail;
      }
      std::string vals;
      for (const auto& [step, va] : a.val) {
        auto it = b.val.find(step);
        if (it == b.val.end()) continue;
        char buf[96];
        std::snprintf(buf, sizeof(buf), "%s%d: %.4f vs %.4f (%+.4f)", vals.empty() ? "" : "; ", step, it->second, va,
                      it->second - va);
        vals += buf;
      }
      std::printf("  %-16s vs fp32 | |d loss| max %.4f (step %d), mean %.4f, mean over the last quarter %.4f | "
                  "val %s\n",
                  other.label.c_str(), max_d, max_step, n ? sum_d / n : NAN, n_tail ? sum_tail / n_tail : NAN,
                  vals.c_str());
    };
    compare(runs[1]);
    compare(runs[2]);
  }
  fs::remove_all(work);
  return 0;
}
