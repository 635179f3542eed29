// Sends a worker's step and validation metrics to the coordinator
// (WorkerService.ReportProgress) from a background thread, so training never waits on
// the network: reports are queued; when the coordinator is slow or unreachable the
// oldest step reports are dropped (the newest matter) and sending is retried with the
// next report. Every RPC has a deadline. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "proto/coordinator.grpc.pb.h"
#include "runtime/rpc/rpc.h"
#include "runtime/worker/trainer.h"

namespace colossal::worker {

class ProgressReporter {
 public:
  // `coordinator` is HOST:PORT. Fails only on bad security settings.
  static absl::StatusOr<std::unique_ptr<ProgressReporter>> Create(
      const std::string& coordinator, const rpc::SecurityOptions& security,
      const std::string& job_id, int attempt, int rank);
  ~ProgressReporter();  // sends what is queued (at most ~2 s), then stops

  void Step(const StepReport& report);
  void Val(int64_t step, double val_loss);

 private:
  ProgressReporter() = default;
  void Enqueue(v1::ProgressReport report);
  void Loop();

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string token_;
  std::string job_id_;
  int attempt_ = 0, rank_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::ProgressReport> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace colossal::worker
