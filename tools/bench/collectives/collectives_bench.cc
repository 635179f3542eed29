// Collectives benchmark: colossal's UCX communicator against OpenMPI on this machine, in
// the same run. For each rank count it forks the colossal ranks itself (loopback TCP store,
// UCX shared memory), then runs the MPI twin (mpi_collectives_bench) under mpirun, and
// alternates the two `--repeats` times, keeping each side's best time per size. Both
// sides check each size once for correct sums (sweep.h CheckResult) before timing it; a
// wrong result fails the run. Prints one markdown table per (collective, ranks): latency,
// algbw, busbw of both and the busbw ratio.
//
//   bazel run //tools/bench/collectives:collectives_bench -- [--ranks=2,4]
//       [--max_bytes=268435456] [--target_s=0.25] [--repeats=2] [--chunk_bytes=N]
//       [--small_bytes=N] [--no_mpi] [--mpi_bin=PATH]
//
// Placement mirrors mpirun's default: with no more ranks than cores each rank is bound to
// core `rank` (mpirun --bind-to core); beyond that, nobody is bound.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/tcp_store.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"
#include "tools/bench/collectives/sweep.h"

namespace colossal::bench {
namespace {

using parallel::CommOptions;
using parallel::Communicator;
using parallel::TcpStore;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::vector<int> ranks = {2, 4};
  int64_t max_bytes = int64_t{256} << 20;
  double target_s = 0.25;
  int repeats = 2;
  CommOptions comm;
  bool mpi = true;
  std::string mpi_bin;
};

// (collective name, ranks, bytes) → best seconds per call.
using Results = std::map<std::tuple<std::string, int, int64_t>, double>;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

absl::Status Call(Communicator& comm, Collective c, float* send, float* recv, int64_t count) {
  switch (c) {
    case Collective::kAllReduce:
      return comm.AllReduce(recv, count, kernels::DType::kF32)->Wait();
    case Collective::kReduceScatter:
      return comm.ReduceScatter(send, recv, count, kernels::DType::kF32)->Wait();
    case Collective::kAllGather:
      return comm.AllGather(send, recv, count, kernels::DType::kF32)->Wait();
  }
  return absl::InternalError("unknown collective");
}

absl::StatusOr<double> MaxOverRanks(Communicator& comm, double value) {
  std::vector<double> all(comm.size());
  absl::Status st = comm.AllGather(&value, all.data(), 2, kernels::DType::kF32)->Wait();
  if (!st.ok()) return st;
  double m = 0;
  for (double v : all) m = std::max(m, v);
  return m;
}

// One colossal rank: the sweep, results written by rank 0 to `out`.
absl::Status UcxRank(const Flags& flags, int rank, int n, TcpStore& store, FILE* out) {
  if (n <= static_cast<int>(std::thread::hardware_concurrency())) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(rank, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }
  auto comm_or = parallel::CreateUcxCommunicator(store, flags.comm);
  if (!comm_or.ok()) return comm_or.status();
  Communicator& comm = **comm_or;
  std::vector<float> send(flags.max_bytes / 4, 1.0f), recv(flags.max_bytes / 4, 1.0f);
  for (Collective c : kCollectives) {
    for (int64_t bytes : Sizes(4096, flags.max_bytes)) {
      const int64_t count = CountPerCall(c, bytes, n);
      // Correctness once, on rank-dependent inputs, then back to the timing inputs.
      FillForCheck(c, rank, n, count, send.data(), recv.data());
      absl::Status check = Call(comm, c, send.data(), recv.data(), count);
      if (!check.ok()) return check;
      const int64_t wrong = CheckResult(c, rank, n, count, recv.data(), recv.data());
      if (wrong >= 0) {
        return absl::InternalError(absl::StrCat("colossal ", Name(c), ", ", n, " ranks, ", bytes,
                                                " bytes: rank ", rank, " wrong at element ",
                                                wrong));
      }
      std::fill(send.begin(), send.end(), 1.0f);
      std::fill(recv.begin(), recv.begin() + count, 1.0f);
      for (int i = 0; i < 2; ++i) {
        absl::Status st = Call(comm, c, send.data(), recv.data(), count);
        if (!st.ok()) return st;
      }
      absl::Status st = comm.Barrier()->Wait();
      if (!st.ok()) return st;
      auto t0 = Clock::now();
      st = Call(comm, c, send.data(), recv.data(), count);
      if (!st.ok()) return st;
      auto trial = MaxOverRanks(comm, Seconds(t0, Clock::now()));
      if (!trial.ok()) return trial.status();
      const int iters = Iterations(*trial, flags.target_s);
      st = comm.Barrier()->Wait();
      if (!st.ok()) return st;
      t0 = Clock::now();
      for (int i = 0; i < iters && st.ok(); ++i) st = Call(comm, c, send.data(), recv.data(), count);
      if (!st.ok()) return st;
      auto per_call = MaxOverRanks(comm, Seconds(t0, Clock::now()) / iters);
      if (!per_call.ok()) return per_call.status();
      if (rank == 0) PrintResult(out, c, n, bytes, *per_call);
    }
  }
  return absl::OkStatus();
}

void ParseResults(const std::string& text, Results& results) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string tag, name;
    int n = 0;
    long long bytes = 0;
    double seconds = 0;
    if (!(words >> tag >> name >> n >> bytes >> seconds) || tag != "result") continue;
    auto key = std::make_tuple(name, n, static_cast<int64_t>(bytes));
    auto it = results.find(key);
    if (it == results.end() || seconds < it->second) results[key] = seconds;
  }
}

bool RunUcx(const Flags& flags, int n, Results& results) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  FILE* out = fdopen(fds[1], "w");
  parallel::testing::ForkOptions options;
  options.deadline = std::chrono::milliseconds(600000);
  auto exits = parallel::testing::ForkRanks(
      n, [&](int rank, int size, TcpStore& store) { return UcxRank(flags, rank, size, store, out); },
      options);
  std::fclose(out);
  std::string text;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  std::string failures = parallel::testing::Failures(exits);
  if (!failures.empty()) {
    std::fprintf(stderr, "colossal ranks failed:\n%s", failures.c_str());
    return false;
  }
  ParseResults(text, results);
  return true;
}

std::string MpiCommand(const Flags& flags, int n) {
  std::ostringstream cmd;
  cmd << "mpirun --allow-run-as-root --oversubscribe -np " << n << " --mca btl self,vader "
      << flags.mpi_bin << " " << flags.max_bytes << " " << flags.target_s;
  return cmd.str();
}

bool RunMpi(const Flags& flags, int n, Results& results) {
  const std::string cmd = MpiCommand(flags, n);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return false;
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, got);
  int rc = pclose(p);
  if (rc != 0) {
    std::fprintf(stderr, "%s exited with %d\n", cmd.c_str(), rc);
    return false;
  }
  ParseResults(text, results);
  return true;
}

std::string Human(int64_t bytes) {
  char text[32];
  if (bytes >= (1 << 20)) {
    std::snprintf(text, sizeof(text), "%lld MiB", static_cast<long long>(bytes >> 20));
  } else {
    std::snprintf(text, sizeof(text), "%lld KiB", static_cast<long long>(bytes >> 10));
  }
  return text;
}

void PrintTable(const Flags& flags, int n, Collective c, const Results& ucx, const Results& mpi) {
  std::printf("\n%s, %d ranks (fp32 sum; busbw factor %.2f)\n\n", Name(c), n, BusFactor(c, n));
  std::printf("| size | colossal µs | algbw GB/s | busbw GB/s | OpenMPI µs | algbw GB/s | "
              "busbw GB/s | busbw ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t bytes : Sizes(4096, flags.max_bytes)) {
    auto key = std::make_tuple(std::string(Name(c)), n, bytes);
    auto u = ucx.find(key);
    auto m = mpi.find(key);
    std::printf("| %s ", Human(bytes).c_str());
    for (const auto* side : {&u, &m}) {
      const Results& r = side == &u ? ucx : mpi;
      if (*side == r.end()) {
        std::printf("| – | – | – ");
        continue;
      }
      double s = (*side)->second;
      double algbw = bytes / s / 1e9;
      std::printf("| %.1f | %.2f | %.2f ", s * 1e6, algbw, algbw * BusFactor(c, n));
    }
    if (u != ucx.end() && m != mpi.end()) {
      std::printf("| %.2f |\n", m->second / u->second);
    } else {
      std::printf("| – |\n");
    }
  }
}

std::string FindMpiTwin(const char* argv0) {
  std::string self = argv0;
  std::string dir = self.substr(0, self.find_last_of('/') + 1);
  for (const std::string& candidate :
       {self + ".runfiles/colossal/tools/bench/collectives/mpi_collectives_bench",
        dir + "mpi_collectives_bench"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

int Main(int argc, char** argv) {
  Flags flags;
  flags.mpi_bin = FindMpiTwin(argv[0]);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t len = std::strlen(name);
      return arg.compare(0, len, name) == 0 ? arg.c_str() + len : nullptr;
    };
    if (const char* v = value("--ranks=")) {
      flags.ranks.clear();
      std::stringstream list(v);
      std::string item;
      while (std::getline(list, item, ',')) flags.ranks.push_back(std::atoi(item.c_str()));
    } else if (const char* v = value("--max_bytes=")) {
      flags.max_bytes = std::atoll(v);
    } else if (const char* v = value("--target_s=")) {
      flags.target_s = std::atof(v);
    } else if (const char* v = value("--repeats=")) {
      flags.repeats = std::atoi(v);
    } else if (const char* v = value("--chunk_bytes=")) {
      flags.comm.chunk_bytes = std::atoll(v);
    } else if (const char* v = value("--small_bytes=")) {
      flags.comm.small_bytes = std::atoll(v);
    } else if (const char* v = value("--mpi_bin=")) {
      flags.mpi_bin = v;
    } else if (arg == "--no_mpi") {
      flags.mpi = false;
    } else {
      std::fprintf(stderr, "unknown argument %s (see the comment at the top of collectives_bench.cc)\n",
                   arg.c_str());
      return 2;
    }
  }
  if (flags.mpi && flags.mpi_bin.empty()) {
    std::fprintf(stderr, "mpi_collectives_bench not found next to this binary; pass --mpi_bin\n");
    return 2;
  }
  std::printf("collectives_bench: %u cores, load average %s (before), chunk_bytes %lld, "
              "small_bytes %lld, %d repeats, best of each kept\n",
              std::thread::hardware_concurrency(), LoadAverage().c_str(),
              static_cast<long long>(flags.comm.chunk_bytes),
              static_cast<long long>(flags.comm.small_bytes), flags.repeats);
  for (int n : flags.ranks) {
    Results ucx, mpi;
    for (int rep = 0; rep < flags.repeats; ++rep) {
      if (!RunUcx(flags, n, ucx)) return 1;
      if (flags.mpi && !RunMpi(flags, n, mpi)) return 1;
    }
    if (flags.mpi) std::printf("\nOpenMPI: %s\n", MpiCommand(flags, n).c_str());
    for (Collective c : kCollectives) PrintTable(flags, n, c, ucx, mpi);
  }
  std::printf("\nload average %s (after)\n", LoadAverage().c_str());
  return 0;
}

}  // namespace
}  // namespace colossal::bench

int main(int argc, char** argv) { return colossal::bench::Main(argc, argv); }
