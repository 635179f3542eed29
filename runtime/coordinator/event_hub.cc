// Per-job subscriber lists and bounded per-subscription queues.
#include "runtime/coordinator/event_hub.h"

#include <algorithm>

namespace colossal::coordinator {

std::optional<v1::JobEvent> Subscription::Next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  ready_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; });
  if (queue_.empty()) return std::nullopt;
  v1::JobEvent event = std::move(queue_.front());
  queue_.pop_front();
  return event;
}

bool Subscription::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void Subscription::Push(const v1::JobEvent& event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      auto metrics = std::find_if(queue_.begin(), queue_.end(),
                                  [](const v1::JobEvent& e) { return !e.has_state(); });
      if (metrics != queue_.end()) queue_.erase(metrics);
    }
    queue_.push_back(event);
  }
  ready_.notify_all();
}

void Subscription::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  ready_.notify_all();
}

std::shared_ptr<Subscription> EventHub::Subscribe(const std::string& job_id) {
  auto subscription = std::make_shared<Subscription>();
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    subscription->Close();
  } else {
    subscribers_[job_id].push_back(subscription);
  }
  return subscription;
}

void EventHub::Unsubscribe(const std::string& job_id, const Subscription* subscription) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const auto& s) { return s.get() == subscription; }),
             list.end());
  if (list.empty()) subscribers_.erase(it);
}

void EventHub::Publish(const v1::JobEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subscribers_.find(event.job_id());
  if (it == subscribers_.end()) return;
  for (const auto& subscription : it->second) subscription->Push(event);
}

void EventHub::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (auto& [job, list] : subscribers_) {
    for (auto& subscription : list) subscription->Close();
  }
  subscribers_.clear();
}

}  // namespace colossal::coordinator
