// Paging chunk buffers between the compute tier and NVMe.
#include "memory/chunk_manager.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace colossal::memory {
namespace {

constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();
// How many schedule positions ahead prefetching looks, and how many reads it keeps in
// flight at once.
constexpr int kLookahead = 32;
constexpr int kMaxReadsInFlight = 4;

// The NVMe tier of a dry run: every I/O done at once, nothing moved.
class SimulatedNvme : public NvmeStore {
 public:
  SimulatedNvme(int64_t slot_bytes, int64_t slots) : NvmeStore("(simulated)", slot_bytes, slots) {}
  Ticket Write(int64_t, const void*) override { return ++last_; }
  Ticket Read(int64_t, void*) override { return ++last_; }
  absl::Status Wait(Ticket) override { return absl::OkStatus(); }
  bool Done(Ticket) override { return true; }
  IoEngine engine() const override { return IoEngine::kThreads; }
  std::string engine_note() const override { return "simulated"; }
  int64_t bytes_read() const override { return 0; }
  int64_t bytes_written() const override { return 0; }

 private:
  Ticket last_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkManager>> ChunkManager::Create(ChunkManagerOptions options) {
  std::unique_ptr<ChunkManager> m(new ChunkManager(std::move(options)));
  absl::Status s = m->Init();
  if (!s.ok()) return s;
  return m;
}

absl::Status ChunkManager::Init() {
  const ChunkManagerOptions& o = options_;
  COL_CHECK(o.place.on_host());
  COL_CHECK(o.purpose.size() == o.bytes.size());
  COL_CHECK(o.pinned.empty() || o.pinned.size() == o.bytes.size());
  entries_.resize(o.bytes.size());
  int64_t pinned_bytes = 0, paged_bytes = 0, largest = 0;
  for (size_t i = 0; i < o.bytes.size(); ++i) {
    Entry& e = entries_[i];
    e.bytes = o.bytes[i];
    e.purpose = o.purpose[i];
    e.pinned = !o.pinned.empty() && o.pinned[i];
    COL_CHECK(e.bytes > 0 && (o.slot_bytes == 0 || e.bytes % o.slot_bytes == 0));
    if (e.pinned) {
      pinned_bytes += e.bytes;
    } else {
      paged_bytes += e.bytes;
      largest = std::max(largest, e.bytes);
    }
  }
  stats_.compute.budget = o.budget;
  if (o.budget > 0) {
    if (pinned_bytes > o.budget || (paged_bytes > 0 && pinned_bytes + largest > o.budget)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "memory budget ", FormatBytes(o.budget), " cannot hold the ", FormatBytes(pinned_bytes),
          " of chunks placed in it", paged_bytes > 0 ? absl::StrCat(" plus one paged chunk of ", FormatBytes(largest)) : ""));
    }
    room_ = o.budget - pinned_bytes;
  } else {
    room_ = o.transient_room > 0 ? o.transient_room : kUnlimited;
  }
  if (!o.nvme_dir.empty() && paged_bytes > 0) {
    if (o.simulate) {
      nvme_ = std::make_unique<SimulatedNvme>(o.slot_bytes, paged_bytes / o.slot_bytes);
    } else {
      absl::StatusOr<std::unique_ptr<NvmeStore>> store =
          NvmeStore::Open(o.nvme_dir, o.slot_bytes, paged_bytes / o.slot_bytes, o.io_threads);
      if (!store.ok()) return store.status();
      nvme_ = std::move(*store);
    }
    stats_.nvme.budget = paged_bytes;
    int64_t slot = 0;
    for (Entry& e : entries_) {
      if (e.pinned) continue;
      e.slot = slot;
      slot += e.bytes / o.slot_bytes;
    }
  } else if (paged_bytes > room_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory budget ", FormatBytes(o.budget), " cannot hold the model state's ", FormatBytes(pinned_bytes + paged_bytes),
        " and there is no NVMe tier to page to (set memory.nvme_dir)"));
  }
  for (Entry& e : entries_) {
    if (!e.pinned) continue;
    absl::StatusOr<float*> p = NewBlock(e.bytes);
    if (!p.ok()) return p.status();
    e.mem = *p;
  }
  pinned_bytes_ = pinned_bytes;
  stats_.compute.used = stats_.compute.peak = pinned_bytes;
  return absl::OkStatus();
}

ChunkManager::~ChunkManager() {
  CompleteAll(/*wait=*/true);
  for (Entry& e : entries_) {
    if (e.mem != nullptr) DeleteBlock(e.mem, e.bytes);
  }
  for (auto& [bytes, p] : free_) DeleteBlock(p, bytes);
}

absl::StatusOr<float*> ChunkManager::NewBlock(int64_t bytes) {
  if (options_.simulate) {  // distinct, never dereferenced
    fake_next_ += bytes;
    return reinterpret_cast<float*>(fake_next_);
  }
  absl::StatusOr<void*> p = options_.place.allocator().Allocate(bytes, Purpose::kChunks);
  if (!p.ok()) return p.status();
  return static_cast<float*>(*p);
}

void ChunkManager::DeleteBlock(float* p, int64_t bytes) {
  if (!options_.simulate) options_.place.allocator().Free(p, bytes, Purpose::kChunks);
}

void ChunkManager::Clear(float* p, int64_t bytes) {
  if (!options_.simulate) std::memset(p, 0, static_cast<size_t>(bytes));
}

void ChunkManager::SetSchedule(std::vector<std::vector<int>> uses) {
  uses_ = std::move(uses);
  use_positions_.assign(entries_.size(), {});
  for (size_t k = 0; k < uses_.size(); ++k) {
    for (int b : uses_[k]) {
      std::vector<int>& v = use_positions_[b];
      if (v.empty() || v.back() != static_cast<int>(k)) v.push_back(static_cast<int>(k));
    }
  }
  position_ = 0;
}

void ChunkManager::Advance(int position) {
  position_ = position;
  CompleteAll(/*wait=*/false);
  if (!uses_.empty() && nvme_ && status_.ok()) Prefetch();
}

int64_t ChunkManager::NextUse(int buffer, int64_t from) const {
  if (uses_.empty()) return clock_ - entries_[buffer].last_use;  // least recently used first
  const std::vector<int>& v = use_positions_[buffer];
  if (v.empty()) return kUnlimited;
  const int64_t n = static_cast<int64_t>(uses_.size());
  const int64_t at = (position_ + from) % n;  // `from` < n
  auto it = std::lower_bound(v.begin(), v.end(), static_cast<int>(at));
  const int64_t next = it != v.end() ? *it : v.front() + n;
  return from + (next - at);
}

void ChunkManager::FreeBlock(float* p, int64_t bytes) { free_.emplace(bytes, p); }

absl::StatusOr<float*> ChunkManager::Block(int64_t bytes, bool wait, int64_t at, int exclude) {
  for (;;) {
    // A free block of the size (allocating anew costs the zeroing and page faults of
    // every page again).
    if (auto it = free_.find(bytes); it != free_.end()) {
      float* p = it->second;
      free_.erase(it);
      return p;
    }
    if (room_ == kUnlimited || used_ + bytes <= room_) {
      absl::StatusOr<float*> p = NewBlock(bytes);
      if (!p.ok()) return p.status();
      used_ += bytes;
      stats_.compute.used = pinned_bytes_ + used_;
      stats_.compute.peak = std::max(stats_.compute.peak, stats_.compute.used);
      return *p;
    }
    if (!free_.empty()) {  // free blocks of other sizes go back to the allocator
      auto it = std::prev(free_.end());
      DeleteBlock(it->second, it->first);
      used_ -= it->first;
      stats_.compute.used = pinned_bytes_ + used_;
      free_.erase(it);
      continue;
    }
    // An eviction already under way frees a block when its write lands: wait for that
    // before evicting anything else.
    if (wait) {
      int leaving = -1;
      for (int b : in_flight_) {
        if (entries_[b].io_is_write && entries_[b].drop_after_write) leaving = b;
      }
      if (leaving >= 0) {
        Complete(leaving, /*wait=*/true);
        continue;
      }
    }
    // Belady's victim: the paged buffer whose next use from `at` on is farthest. A
    // prefetch (for a buffer used at `at`) evicts it only when it can leave now (is not
    // used before `at` either); if the farthest one is still needed first, evicting
    // another now would cost a read the demand order avoids, so the prefetch waits.
    int victim = -1;
    int64_t victim_next = -1;
    bool victim_free = false;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      if (e.mem == nullptr || e.pinned || static_cast<int>(i) == exclude) continue;
      if (!nvme_ && !e.dead) continue;  // nowhere to put its contents
      const bool free = e.pins == 0 && e.io.empty() && (wait || NextUse(static_cast<int>(i), 0) > at);
      if (wait && !free) continue;
      const int64_t next = NextUse(static_cast<int>(i), at);
      if (next > victim_next) victim = static_cast<int>(i), victim_next = next, victim_free = free;
    }
    if (victim >= 0 && victim_free && (wait || victim_next > at)) {
      Entry& v = entries_[victim];
      const bool writes = !v.dead && (!v.on_nvme || v.dirty);
      if (!writes && v.bytes == bytes) {  // its block is the one wanted
        float* p = v.mem;
        v.mem = nullptr;
        ++stats_.evictions;
        return p;
      }
      Evict(victim);
      if (writes && !wait) return static_cast<float*>(nullptr);  // room comes when the write lands
      if (writes) Complete(victim, /*wait=*/true);  // its block is the room
      continue;
    }
    if (!wait) return static_cast<float*>(nullptr);
    // Every buffer left is in use or moving: a write that lands frees its block, a read
    // that lands makes its buffer evictable (writes first: their room is sure).
    int moving = -1;
    for (int b : in_flight_) {
      if (b != exclude && (moving < 0 || (entries_[b].io_is_write && !entries_[moving].io_is_write))) moving = b;
    }
    if (moving >= 0) {
      Complete(moving, /*wait=*/true);
      continue;
    }
    return absl::ResourceExhaustedError(absl::StrCat("memory budget ", FormatBytes(options_.budget),
                                                     ": no room for a chunk of ", FormatBytes(bytes),
                                                     "; held now: ", Holders()));
  }
}

std::string ChunkManager::Holders() const {
  int accessed = 0, reading = 0, pinned = 0;
  int64_t accessed_bytes = 0, pinned_bytes = 0;
  for (const Entry& e : entries_) {
    if (e.mem == nullptr) continue;
    if (e.pinned) ++pinned, pinned_bytes += e.bytes;
    else if (e.pins > 0) ++accessed, accessed_bytes += e.bytes;
    else if (!e.io.empty()) ++reading;
  }
  return absl::StrCat(accessed, " chunk buffers in use (", FormatBytes(accessed_bytes), "), ", pinned,
                      " placed (", FormatBytes(pinned_bytes), "), ", reading, " being read");
}

void ChunkManager::Evict(int buffer) {
  Entry& e = entries_[buffer];
  ++stats_.evictions;
  if (e.dead || (e.on_nvme && !e.dirty)) {
    FreeBlock(e.mem, e.bytes);
    e.mem = nullptr;
    return;
  }
  COL_CHECK(nvme_ != nullptr);
  const int64_t slot_floats = options_.slot_bytes / static_cast<int64_t>(sizeof(float));
  for (int64_t k = 0; k < e.bytes / options_.slot_bytes; ++k) {
    e.io.push_back(nvme_->Write(e.slot + k, e.mem + k * slot_floats));
  }
  e.io_is_write = true;
  e.drop_after_write = true;
  e.dirty = false;  // an Access that writes waits for the write first
  in_flight_.push_back(buffer);
}

void ChunkManager::StartRead(int buffer, float* block) {
  Entry& e = entries_[buffer];
  e.mem = block;
  const int64_t slot_floats = options_.slot_bytes / static_cast<int64_t>(sizeof(float));
  for (int64_t k = 0; k < e.bytes / options_.slot_bytes; ++k) {
    e.io.push_back(nvme_->Read(e.slot + k, e.mem + k * slot_floats));
  }
  e.io_is_write = false;
  in_flight_.push_back(buffer);
}

bool ChunkManager::Complete(int buffer, bool wait) {
  Entry& e = entries_[buffer];
  if (!wait) {
    for (NvmeStore::Ticket t : e.io) {
      if (!nvme_->Done(t)) return false;
    }
  }
  absl::Status failed;
  for (NvmeStore::Ticket t : e.io) {
    absl::Status s = nvme_->Wait(t);
    if (!s.ok() && failed.ok()) failed = s;
  }
  e.io.clear();
  in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), buffer));
  if (!failed.ok()) {
    if (status_.ok()) status_ = failed;
    if (e.io_is_write) {
      e.dirty = true;  // still only in memory: keep it there
      e.drop_after_write = false;
    }
    return true;
  }
  if (e.io_is_write) {
    if (!e.on_nvme) stats_.nvme.used += e.bytes;
    stats_.nvme.peak = std::max(stats_.nvme.peak, stats_.nvme.used);
    e.on_nvme = true;
    stats_.nvme.bytes_in += e.bytes;
    stats_.compute.bytes_out += e.bytes;
    if (e.drop_after_write && e.pins == 0) {
      FreeBlock(e.mem, e.bytes);
      e.mem = nullptr;
    }
    e.drop_after_write = false;
  } else {
    stats_.nvme.bytes_out += e.bytes;
    stats_.compute.bytes_in += e.bytes;
  }
  return true;
}

void ChunkManager::CompleteAll(bool wait) {
  for (int b : std::vector<int>(in_flight_)) Complete(b, wait);
}

void ChunkManager::Prefetch() {
  int reads = 0;
  for (int b : in_flight_) reads += entries_[b].io_is_write ? 0 : 1;
  const int n = static_cast<int>(uses_.size());
  // In the order of need, from the position about to run: a buffer not in memory takes
  // room in turn (a read, or zeros for one without contents), so none is brought ahead
  // of a nearer one.
  // (With a keep window, no further than it: what is brought stays only that long.)
  const int lookahead = options_.keep_window > 0 ? std::min(kLookahead, options_.keep_window) : kLookahead;
  for (int d = 0; d <= std::min(lookahead, n - 1) && reads < kMaxReadsInFlight; ++d) {
    for (int b : uses_[(position_ + d) % n]) {
      Entry& e = entries_[b];
      if (e.mem != nullptr) continue;
      absl::StatusOr<float*> block = Block(e.bytes, /*wait=*/false, d, b);
      if (!block.ok() || *block == nullptr) return;
      if (e.dead || !e.on_nvme) {
        e.mem = *block;
        Clear(e.mem, e.bytes);
        if (++reads >= kMaxReadsInFlight) return;  // counts like a read: it takes a block
        continue;
      }
      StartRead(b, *block);
      ++stats_.prefetches;
      if (++reads >= kMaxReadsInFlight) return;
    }
  }
}

absl::StatusOr<float*> ChunkManager::Access(int buffer, Mode mode) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<float*> p = AccessNow(buffer, mode);
  stats_.access_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return p;
}

absl::StatusOr<float*> ChunkManager::AccessNow(int buffer, Mode mode) {
  if (!status_.ok()) return status_;
  Entry& e = entries_[buffer];
  e.last_use = ++clock_;
  const bool changes = mode != Mode::kRead;
  if (e.mem != nullptr && !e.io.empty()) {
    if (e.io_is_write) {
      e.drop_after_write = false;  // wanted again: it stays
      if (changes) Complete(buffer, /*wait=*/true);
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      ++stats_.waited_reads;
      Complete(buffer, /*wait=*/true);
      stats_.read_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!status_.ok()) return status_;
  }
  if (e.mem == nullptr) {
    absl::StatusOr<float*> block = Block(e.bytes, /*wait=*/true, 0, buffer);
    if (!block.ok()) return block.status();
    if (e.dead || mode == Mode::kOverwrite) {
      e.mem = *block;
      Clear(e.mem, e.bytes);
    } else {
      COL_CHECK(e.on_nvme);
      const auto t0 = std::chrono::steady_clock::now();
      ++stats_.waited_reads;
      StartRead(buffer, *block);
      Complete(buffer, /*wait=*/true);
      stats_.read_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!status_.ok()) return status_;
    }
  } else if (e.dead || mode == Mode::kOverwrite) {
    Clear(e.mem, e.bytes);
  }
  ++e.pins;
  if (changes) {
    e.dirty = true;
    e.dead = false;
  }
  return e.mem;
}

void ChunkManager::Release(int buffer) {
  Entry& e = entries_[buffer];
  COL_CHECK(e.pins > 0);
  --e.pins;
  if (options_.keep_window > 0 && !uses_.empty() && nvme_ && e.pins == 0 && !e.pinned && e.io.empty() &&
      NextUse(buffer, 1) > options_.keep_window) {
    Evict(buffer);
  }
}

void ChunkManager::Discard(int buffer) {
  Entry& e = entries_[buffer];
  if (e.on_nvme) stats_.nvme.used -= e.bytes;
  e.dead = true;
  e.dirty = false;
  e.on_nvme = false;
}

absl::Status ChunkManager::Flush() {
  CompleteAll(/*wait=*/true);
  return status_;
}

}  // namespace colossal::memory
