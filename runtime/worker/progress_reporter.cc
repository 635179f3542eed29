// Background progress reporting.
#include "runtime/worker/progress_reporter.h"

#include <chrono>

#include "runtime/base/logging.h"

namespace colossal::worker {
namespace {
constexpr size_t kMaxQueued = 64;
constexpr auto kRpcTimeout = std::chrono::milliseconds(2000);
}  // namespace

absl::StatusOr<std::unique_ptr<ProgressReporter>> ProgressReporter::Create(
    const std::string& coordinator, const rpc::SecurityOptions& security,
    const std::string& job_id, int attempt, int rank) {
  auto channel = rpc::MakeChannel(coordinator, security);
  if (!channel.ok()) return channel.status();
  auto token = rpc::ReadToken(security.token_file);
  if (!token.ok()) return token.status();
  std::unique_ptr<ProgressReporter> r(new ProgressReporter());
  r->stub_ = v1::WorkerService::NewStub(*channel);
  r->token_ = *token;
  r->job_id_ = job_id;
  r->attempt_ = attempt;
  r->rank_ = rank;
  r->thread_ = std::thread([p = r.get()] { p->Loop(); });
  return r;
}

ProgressReporter::~ProgressReporter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ProgressReporter::Enqueue(v1::ProgressReport report) {
  report.set_job_id(job_id_);
  report.set_attempt(attempt_);
  report.set_rank(rank_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      // Drop the oldest step report; validation reports are rare and kept.
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->has_step()) {
          queue_.erase(it);
          break;
        }
      }
    }
    queue_.push_back(std::move(report));
  }
  cv_.notify_one();
}

void ProgressReporter::Step(const StepReport& r) {
  v1::ProgressReport report;
  v1::StepMetrics* m = report.mutable_step();
  m->set_step(r.step);
  m->set_total_steps(r.total_steps);
  m->set_loss(r.loss);
  m->set_lr(r.lr);
  m->set_grad_norm(r.grad_norm);
  m->set_tokens_per_s(r.tokens_per_s);
  m->set_step_ms(r.step_ms);
  m->set_mfu(r.mfu);
  Enqueue(std::move(report));
}

void ProgressReporter::Val(int64_t step, double val_loss) {
  v1::ProgressReport report;
  report.mutable_val()->set_step(step);
  report.mutable_val()->set_val_loss(val_loss);
  Enqueue(std::move(report));
}

void ProgressReporter::Loop() {
  auto give_up_at = std::chrono::steady_clock::time_point::max();
  bool warned = false;
  for (;;) {
    v1::ProgressReport report;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && give_up_at == std::chrono::steady_clock::time_point::max()) {
        give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      }
      if (queue_.empty() || std::chrono::steady_clock::now() > give_up_at) return;
      report = queue_.front();
    }
    auto context = rpc::NewContext(kRpcTimeout, token_);
    v1::ProgressAck ack;
    grpc::Status status = stub_->ReportProgress(context.get(), report, &ack);
    std::unique_lock<std::mutex> lock(mu_);
    if (status.ok()) {
      if (!queue_.empty()) queue_.pop_front();
      warned = false;
    } else {
      if (!warned) LOG_WARN("progress report failed: {}", status.error_message());
      warned = true;
      // Back off a little; a newer report replaces stale ones through the queue bound.
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
    }
  }
}

}  // namespace colossal::worker
