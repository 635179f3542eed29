#include "runtime/worker/step_line.h"

#include <cstdio>

#include "absl/strings/str_format.h"
#include "runtime/base/logging.h"

namespace colossal::worker {

std::string Duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

void PrintStepLine(const StepReport& r, double val_loss, double eta_seconds, bool terminal, bool due) {
  if (!due) return;
  if (terminal) {
    std::fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s  %.0f ms/step  ETA %s",
                 static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss,
                 val_loss >= 0 ? absl::StrFormat("  val %.4f", val_loss).c_str() : "", r.lr, r.grad_norm,
                 r.tokens_per_s, r.step_ms, Duration(eta_seconds).c_str());
    if (r.step == r.total_steps) std::fprintf(stderr, "\n");
    std::fflush(stderr);
    return;
  }
  LOG_INFO("loss {:.4f} lr {:.3e} grad_norm {:.3f} {:.0f} tok/s {:.1f} ms/step mfu {:.2f}", r.loss, r.lr,
           r.grad_norm, r.tokens_per_s, r.step_ms, r.mfu);
}

}  // namespace colossal::worker
