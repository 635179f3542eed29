// EventHub: fan-out of JobEvents (state changes, step and validation metrics) to the
// WatchJob streams of each job. Publishers are the scheduler, under its own lock, so a
// watcher that subscribes under that lock sees no gap and no duplicate between the
// snapshot it starts from and the events that follow. Each subscription buffers up to
// kMaxQueued events; past that the oldest metrics events are dropped (state changes
// never are). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "proto/job.pb.h"

namespace colossal::coordinator {

class Subscription {
 public:
  static constexpr size_t kMaxQueued = 4096;

  // The next event; nullopt after `timeout` or once the hub closed (see closed()).
  std::optional<v1::JobEvent> Next(std::chrono::milliseconds timeout);
  bool closed() const;

 private:
  friend class EventHub;
  void Push(const v1::JobEvent& event);
  void Close();

  mutable std::mutex mu_;
  std::condition_variable ready_;
  std::deque<v1::JobEvent> queue_;
  bool closed_ = false;
};

class EventHub {
 public:
  std::shared_ptr<Subscription> Subscribe(const std::string& job_id);
  void Unsubscribe(const std::string& job_id, const Subscription* subscription);
  void Publish(const v1::JobEvent& event);
  // Closes every subscription (coordinator shutdown); later subscriptions start closed.
  void Close();

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::shared_ptr<Subscription>>> subscribers_;
  bool closed_ = false;
};

}  // namespace colossal::coordinator
