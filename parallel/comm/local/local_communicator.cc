// Thread-rank collectives over shared memory.
#include "parallel/comm/local/local_communicator.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "parallel/comm/ucx/reduce.h"
#include "runtime/base/check.h"

namespace colossal::parallel {
namespace {

using ucx::Bf16ToFloat;
using ucx::FloatToBf16;

// out[i] = Σ_r in_r[offset + i] in rank order.
void SumInto(const std::vector<const void*>& all, int64_t offset, int64_t count, DType dtype,
             void* out) {
  if (dtype == DType::kF32) {
    float* o = static_cast<float*>(out);
    for (int64_t i = 0; i < count; ++i) {
      float s = 0;
      for (const void* p : all) s += static_cast<const float*>(p)[offset + i];
      o[i] = s;
    }
  } else {
    COL_CHECK(dtype == DType::kBF16);
    uint16_t* o = static_cast<uint16_t*>(out);
    for (int64_t i = 0; i < count; ++i) {
      float s = 0;
      for (const void* p : all) s += Bf16ToFloat(static_cast<const uint16_t*>(p)[offset + i]);
      o[i] = FloatToBf16(s);
    }
  }
}

// A receive: completes when its message is in the mailbox.
class RecvWork : public Work {
 public:
  RecvWork(std::shared_ptr<LocalGroup> group, int from, int to, int tag, void* buf, int64_t bytes)
      : group_(std::move(group)), from_(from), to_(to), tag_(tag), buf_(buf), bytes_(bytes) {}
  absl::Status Wait() override {
    if (!done_) status_ = group_->Take(from_, to_, tag_, buf_, bytes_, /*wait=*/true), done_ = true;
    return status_;
  }
  bool Done() override {
    if (done_) return true;
    absl::Status s = group_->Take(from_, to_, tag_, buf_, bytes_, /*wait=*/false);
    if (absl::IsUnavailable(s)) return false;
    status_ = s, done_ = true;
    return true;
  }

 private:
  std::shared_ptr<LocalGroup> group_;
  int from_, to_, tag_;
  void* buf_;
  int64_t bytes_;
  bool done_ = false;
  absl::Status status_;
};

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  const std::vector<int>& global_ranks() const override { return group_->global_ranks(); }

  std::unique_ptr<Work> AllReduce(void* buf, int64_t count, DType dtype) override {
    CountSent(SentByRing(Collective::kAllReduce, count * kernels::DTypeSize(dtype), size()));
    return Run(buf, count * kernels::DTypeSize(dtype), buf,
               [&](const std::vector<const void*>& all, char* out) {
                 SumInto(all, 0, count, dtype, out);
               });
  }

  std::unique_ptr<Work> ReduceScatter(const void* send, void* recv, int64_t count,
                                      DType dtype) override {
    CountSent(SentByRing(Collective::kReduceScatter, count * kernels::DTypeSize(dtype), size()));
    return Run(send, count * kernels::DTypeSize(dtype), recv,
               [&](const std::vector<const void*>& all, char* out) {
                 SumInto(all, rank_ * count, count, dtype, out);
               });
  }

  std::unique_ptr<Work> AllGather(const void* send, void* recv, int64_t count,
                                  DType dtype) override {
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    CountSent(SentByRing(Collective::kAllGather, bytes, size()));
    return Run(send, bytes * size(), recv, [&](const std::vector<const void*>& all, char* out) {
      for (int r = 0; r < size(); ++r) std::memcpy(out + r * bytes, all[r], bytes);
    });
  }

  std::unique_ptr<Work> Broadcast(void* buf, int64_t count, DType dtype, int root) override {
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    CountSent(SentByRing(Collective::kBroadcast, bytes, size()));
    return Run(buf, bytes, rank_ == root ? nullptr : buf,
               [&](const std::vector<const void*>& all, char* out) {
                 std::memcpy(out, all[root], bytes);
               });
  }

  std::unique_ptr<Work> AllToAll(const void* send, void* recv, int64_t count, DType dtype) override {
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    CountSent(SentByRing(Collective::kAllToAll, bytes, size()));
    return Run(send, bytes * size(), recv, [&](const std::vector<const void*>& all, char* out) {
      for (int r = 0; r < size(); ++r) {
        std::memcpy(out + r * bytes, static_cast<const char*>(all[r]) + rank_ * bytes, bytes);
      }
    });
  }

  std::unique_ptr<Work> Send(const void* buf, int64_t bytes, int peer, int tag) override {
    if (peer < 0 || peer >= size() || peer == rank_) {
      return std::make_unique<DoneWork>(absl::InvalidArgumentError(absl::StrCat("Send to rank ", peer)));
    }
    CountSent(bytes);
    group_->Post(rank_, peer, tag, buf, bytes);
    return std::make_unique<DoneWork>(absl::OkStatus());
  }
  std::unique_ptr<Work> Recv(void* buf, int64_t bytes, int peer, int tag) override {
    if (peer < 0 || peer >= size() || peer == rank_) {
      return std::make_unique<DoneWork>(absl::InvalidArgumentError(absl::StrCat("Recv from rank ", peer)));
    }
    return std::make_unique<RecvWork>(group_, peer, rank_, tag, buf, bytes);
  }

  std::unique_ptr<Work> Barrier() override {
    std::vector<const void*> all;
    return std::make_unique<DoneWork>(group_->Exchange(rank_, nullptr, &all));
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::vector<int>& ranks) override {
    int local = -1;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] == rank_) local = static_cast<int>(i);
    }
    if (local < 0) return absl::InvalidArgumentError("Split: this rank is not a member");
    return group_->SubGroup(ranks)->Member(local);
  }

  void Abort(const absl::Status& status) override { group_->Abort(status); }

 private:
  // One collective: every member posts `send`; `fill` forms this rank's `bytes` of result
  // from every member's input, into a scratch buffer; once every member has read every
  // input (a second exchange), the result is copied to `out` (null: nothing to copy).
  template <typename Fill>
  std::unique_ptr<Work> Run(const void* send, int64_t bytes, void* out, Fill fill) {
    std::vector<const void*> all;
    std::vector<char> tmp(bytes);
    absl::Status s = group_->Exchange(rank_, send, &all);
    if (s.ok()) {
      fill(all, tmp.data());
      s = group_->Exchange(rank_, nullptr, &all);
    }
    if (s.ok() && out != nullptr) std::memcpy(out, tmp.data(), tmp.size());
    return std::make_unique<DoneWork>(s);
  }

  std::shared_ptr<LocalGroup> group_;
  int rank_;
};

}  // namespace

std::shared_ptr<LocalGroup> LocalGroup::Create(int size, std::chrono::milliseconds timeout,
                                               std::vector<int> global_ranks) {
  std::shared_ptr<LocalGroup> g(new LocalGroup());
  g->size_ = size;
  g->timeout_ = timeout;
  if (global_ranks.empty()) {
    for (int r = 0; r < size; ++r) global_ranks.push_back(r);
  }
  g->global_ranks_ = std::move(global_ranks);
  g->posts_.resize(size);
  g->present_.assign(size, false);
  return g;
}

std::unique_ptr<Communicator> LocalGroup::Member(int rank) {
  COL_CHECK(rank >= 0 && rank < size_);
  return std::make_unique<LocalCommunicator>(shared_from_this(), rank);
}

absl::Status LocalGroup::Exchange(int rank, const void* send, std::vector<const void*>* all) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!aborted_.ok()) return aborted_;
  const int64_t gen = generation_;
  posts_[rank] = send;
  present_[rank] = true;
  if (++arrived_ == size_) {
    // The posts of this generation, kept until every member has copied them (the next
    // generation cannot complete before that, since it needs every member again).
    snapshot_ = posts_;
    *all = snapshot_;
    arrived_ = 0;
    present_.assign(size_, false);
    ++generation_;
    cv_.notify_all();
    return absl::OkStatus();
  }
  const bool done = cv_.wait_for(lock, timeout_, [&] { return generation_ != gen || !aborted_.ok(); });
  if (!aborted_.ok()) return aborted_;
  if (!done) {
    std::string missing;
    for (int r = 0; r < size_; ++r) {
      if (!present_[r]) missing += absl::StrCat(missing.empty() ? "" : ", ", global_ranks_[r]);
    }
    return absl::DeadlineExceededError(
        absl::StrCat("collective timed out waiting for rank(s) ", missing));
  }
  *all = snapshot_;
  return absl::OkStatus();
}

std::shared_ptr<LocalGroup> LocalGroup::SubGroup(const std::vector<int>& members_local) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& g = subgroups_[members_local];
  if (!g) {
    std::vector<int> globals;
    for (int r : members_local) globals.push_back(global_ranks_[r]);
    g = Create(static_cast<int>(members_local.size()), timeout_, globals);
  }
  return g;
}

void LocalGroup::Post(int from, int to, int tag, const void* buf, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  const char* p = static_cast<const char*>(buf);
  mail_[{from, to, tag}].emplace_back(p, p + bytes);
  cv_.notify_all();
}

absl::Status LocalGroup::Take(int from, int to, int tag, void* buf, int64_t bytes, bool wait) {
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [&] {
    auto it = mail_.find({from, to, tag});
    return !aborted_.ok() || (it != mail_.end() && !it->second.empty());
  };
  if (!ready()) {
    if (!wait) return absl::UnavailableError("not yet");
    if (!cv_.wait_for(lock, timeout_, ready)) {
      return absl::DeadlineExceededError(absl::StrCat("receive from rank ", global_ranks_[from], " (tag ", tag,
                                                      ") timed out"));
    }
  }
  if (!aborted_.ok()) return aborted_;
  std::deque<std::vector<char>>& q = mail_[{from, to, tag}];
  std::vector<char> msg = std::move(q.front());
  q.pop_front();
  if (static_cast<int64_t>(msg.size()) != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("receive of ", bytes, " bytes from rank ", global_ranks_[from],
                                                   " got a message of ", msg.size()));
  }
  std::memcpy(buf, msg.data(), msg.size());
  return absl::OkStatus();
}

void LocalGroup::Abort(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = status;
  cv_.notify_all();
}

}  // namespace colossal::parallel
