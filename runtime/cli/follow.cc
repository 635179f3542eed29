// Job following: watch stream, log stream, progress line, signal-driven cancel.
#include "runtime/cli/follow.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "runtime/base/env.h"

namespace colossal::cli {
namespace {

std::atomic<bool> g_signalled{false};
void OnSignal(int) { g_signalled.store(true); }

std::string Duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

}  // namespace

std::string WorkerError(const std::string& tail) {
  std::string last;
  for (absl::string_view line : absl::StrSplit(tail, '\n')) {
    const absl::string_view marker = "colossal-worker: error: ";
    if (auto pos = line.find(marker); pos != absl::string_view::npos) {
      return std::string(line.substr(pos + marker.size()));
    }
    if (!line.empty()) last = std::string(line);
  }
  return last;
}

int FollowJob(JobClient& client, const std::string& job_id, const FollowOptions& options,
              v1::Job* final_job) {
  bool progress = options.progress > 0;
  if (options.progress < 0) {
    auto env = base::GetEnv(base::kEnvProgress);
    progress = env ? *env == "1" : isatty(STDERR_FILENO) == 1;
  }
  g_signalled = false;
  struct sigaction old_int {}, old_term {};
  if (options.cancel_on_signal) {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }

  // Rank 0's log to stdout when no progress line is drawn.
  std::thread logs;
  std::atomic<bool> logs_done{false};
  if (!progress) {
    logs = std::thread([&] {
      client.Logs(job_id, 0, /*follow=*/true, [](const v1::LogChunk& c) {
        std::fwrite(c.data().data(), 1, c.data().size(), stdout);
        std::fflush(stdout);
        return true;
      }).IgnoreError();
      logs_done = true;
    });
  }
  // Cancels the job once on the first signal.
  std::atomic<bool> watching{true};
  std::thread canceller([&] {
    bool sent = false;
    while (watching) {
      if (g_signalled && !sent) {
        sent = true;
        std::fprintf(stderr, "%scancelling %s ...\n", progress ? "\n" : "", job_id.c_str());
        client.Cancel(job_id).IgnoreError();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  const auto start = std::chrono::steady_clock::now();
  bool line_open = false;
  absl::Status watch = client.Watch(job_id, [&](const v1::JobEvent& e) {
    if (e.has_step()) {
      if (!progress) return true;
      const v1::StepMetrics& m = e.step();
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double eta = m.step() > 0 ? elapsed / m.step() * (m.total_steps() - m.step()) : 0;
      std::fprintf(stderr,
                   "\r\033[Kstep %lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  %.0f ms/step  ETA %s",
                   static_cast<long long>(m.step()), static_cast<long long>(m.total_steps()),
                   m.loss(), m.lr(), m.grad_norm(), m.tokens_per_s(), m.step_ms(),
                   Duration(eta).c_str());
      std::fflush(stderr);
      line_open = true;
      return true;
    }
    if (line_open) std::fprintf(stderr, "\n");
    line_open = false;
    // Beside a progress line these go to the terminal (stderr); otherwise to stdout with
    // the forwarded log, leaving stderr for the result's error alone.
    std::FILE* out = progress ? stderr : stdout;
    if (e.has_val()) {
      std::fprintf(out, "%s: step %lld val_loss %.4f\n", job_id.c_str(),
                   static_cast<long long>(e.val().step()), e.val().val_loss());
    } else {
      std::fprintf(out, "%s: %s (attempt %d)%s%s\n", job_id.c_str(), StateName(e.state()).c_str(),
                   e.attempt(), e.message().empty() ? "" : ": ",
                   e.message().empty() ? "" : WorkerError(e.message()).c_str());
    }
    std::fflush(out);
    return true;
  });
  if (line_open) std::fprintf(stderr, "\n");
  watching = false;
  canceller.join();

  auto job = client.Get(job_id);
  if (logs.joinable()) {
    // The log stream ends by itself once the job is terminal and its logs are drained;
    // bound the wait, then cut it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!logs_done && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    client.CancelStreams();
    logs.join();
  }
  if (options.cancel_on_signal) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
  if (!watch.ok() || !job.ok()) {
    std::fprintf(stderr, "colossal %s: %s\n", options.command.c_str(),
                 std::string((!watch.ok() ? watch : job.status()).message()).c_str());
    return 1;
  }
  if (final_job) *final_job = *job;
  switch (job->state()) {
    case v1::SUCCEEDED:
      return 0;
    case v1::FAILED:
      std::fprintf(stderr, "colossal %s: %s\n", options.command.c_str(),
                   WorkerError(job->message()).c_str());
      return job->exit_code() == 2 ? 2 : 1;
    default:
      return 1;
  }
}

}  // namespace colossal::cli
