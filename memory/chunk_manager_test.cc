// The chunk manager against a model of what each buffer must hold (data survives every
// move), the budget (never exceeded), and independent simulations of the replacement
// rules (its NVMe reads between Belady's minimum and LRU's count).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>

#include "memory/chunk_manager.h"

namespace colossal::memory {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kBytes = 64 << 10;  // one buffer
constexpr int64_t kFloats = kBytes / 4;

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/chunks-" + std::to_string(getpid());
  fs::create_directories(dir);
  return dir;
}

ChunkManagerOptions Options(int buffers, int64_t budget_buffers, bool nvme) {
  ChunkManagerOptions o;
  o.bytes.assign(buffers, kBytes);
  o.purpose.assign(buffers, Purpose::kParameters);
  o.budget = budget_buffers * kBytes;
  o.slot_bytes = kBytes;
  if (nvme) o.nvme_dir = TempDir();
  return o;
}

float Value(int buffer, int64_t i, int version) { return static_cast<float>(buffer * 1000003 + i * 7 + version); }

void Fill(float* p, int buffer, int version) {
  for (int64_t i = 0; i < kFloats; ++i) p[i] = Value(buffer, i, version);
}

bool Holds(const float* p, int buffer, int version) {
  for (int64_t i = 0; i < kFloats; ++i) {
    if (p[i] != (version < 0 ? 0.0f : Value(buffer, i, version))) return false;
  }
  return true;
}

// Reads a cyclic schedule would need with `capacity` slots under Belady's rule (the
// fewest possible) and under LRU, each cycle after the first (whose reads are of fresh
// buffers for the manager: none).
std::pair<int64_t, int64_t> ReferenceMisses(const std::vector<int>& cycle, int capacity, int cycles) {
  std::vector<int> seq;
  for (int c = 0; c < cycles; ++c) seq.insert(seq.end(), cycle.begin(), cycle.end());
  auto run = [&](bool belady) {
    std::set<int> cache;
    std::map<int, int> last;
    int64_t misses = 0;
    for (size_t t = 0; t < seq.size(); ++t) {
      const int b = seq[t];
      last[b] = static_cast<int>(t);
      if (cache.count(b)) continue;
      if (t >= cycle.size()) ++misses;  // the first cycle creates the buffers
      if (static_cast<int>(cache.size()) == capacity) {
        int victim = -1;
        int64_t best = -1;
        for (int c : cache) {
          int64_t key;
          if (belady) {
            size_t n = t + 1;
            while (n < seq.size() && seq[n] != c) ++n;
            key = static_cast<int64_t>(n);
          } else {
            key = static_cast<int64_t>(t) - last[c];
          }
          if (key > best) best = key, victim = c;
        }
        cache.erase(victim);
      }
      cache.insert(b);
    }
    return misses;
  };
  return {run(true), run(false)};
}

TEST_CASE("contents survive paging through a budget of three buffers") {
  for (bool schedule : {false, true}) {
    auto m = ChunkManager::Create(Options(12, 3, true));
    REQUIRE(m.ok());
    ChunkManager& cm = **m;
    INFO(cm.io_note());
    std::vector<int> version(12, -1);
    std::vector<std::vector<int>> uses;
    std::mt19937 rng(3);
    std::vector<int> order;
    for (int k = 0; k < 200; ++k) order.push_back(static_cast<int>(rng() % 12));
    for (int b : order) uses.push_back({b});
    if (schedule) cm.SetSchedule(uses);
    for (int round = 0; round < 3; ++round) {
      for (size_t k = 0; k < order.size(); ++k) {
        const int b = order[k];
        cm.Advance(static_cast<int>(k));
        const bool write = (k + round) % 3 == 0;
        absl::StatusOr<float*> p = cm.Access(b, write ? ChunkManager::Mode::kWrite : ChunkManager::Mode::kRead);
        REQUIRE(p.ok());
        REQUIRE(Holds(*p, b, version[b]));
        if (write) Fill(*p, b, version[b] = static_cast<int>(k) + round * 1000);
        cm.Release(b);
        REQUIRE(cm.stats().compute.used <= 3 * kBytes);
      }
    }
    REQUIRE(cm.Flush().ok());
    REQUIRE(cm.stats().compute.peak <= 3 * kBytes);
    REQUIRE(cm.stats().nvme.bytes_out > 0);
    if (schedule) REQUIRE(cm.stats().prefetches > 0);
  }
}

TEST_CASE("reads fall between Belady's minimum and LRU's on a cyclic schedule") {
  const std::vector<int> cycle = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 5, 6};
  const int capacity = 3, cycles = 6;
  auto [belady, lru] = ReferenceMisses(cycle, capacity, cycles);
  REQUIRE(belady < lru);
  auto m = ChunkManager::Create(Options(7, capacity, true));
  REQUIRE(m.ok());
  ChunkManager& cm = **m;
  std::vector<std::vector<int>> uses;
  for (int b : cycle) uses.push_back({b});
  cm.SetSchedule(uses);
  for (int c = 0; c < cycles; ++c) {
    for (size_t k = 0; k < cycle.size(); ++k) {
      cm.Advance(static_cast<int>(k));
      REQUIRE(cm.Access(cycle[k], ChunkManager::Mode::kWrite).ok());
      cm.Release(cycle[k]);
    }
  }
  REQUIRE(cm.Flush().ok());
  const int64_t reads = cm.stats().nvme.bytes_out / kBytes;
  INFO("reads " << reads << ", Belady " << belady << ", LRU " << lru);
  REQUIRE(reads >= belady);
  // The manager's schedule repeats: at the end of the last cycle it has prefetched up to
  // two reads (its reads in flight) for a next cycle the reference does not run.
  REQUIRE(reads <= belady + 2);
}

TEST_CASE("pinned buffers stay put and discarded ones are neither written nor read") {
  ChunkManagerOptions o = Options(8, 4, true);
  o.pinned = {true, true, false, false, false, false, false, false};
  auto m = ChunkManager::Create(o);
  REQUIRE(m.ok());
  ChunkManager& cm = **m;
  float* a = *cm.Access(0, ChunkManager::Mode::kOverwrite);
  Fill(a, 0, 1);
  cm.Release(0);
  for (int round = 0; round < 4; ++round) {
    for (int b = 2; b < 8; ++b) {
      float* p = *cm.Access(b, ChunkManager::Mode::kOverwrite);
      Fill(p, b, round);
      cm.Release(b);
    }
  }
  REQUIRE(*cm.Access(0, ChunkManager::Mode::kRead) == a);
  REQUIRE(Holds(a, 0, 1));
  cm.Release(0);
  REQUIRE(cm.Flush().ok());
  const int64_t written = cm.stats().nvme.bytes_in;
  REQUIRE(written > 0);
  for (int b = 2; b < 8; ++b) cm.Discard(b);
  for (int b = 2; b < 8; ++b) {
    float* p = *cm.Access(b, ChunkManager::Mode::kRead);
    REQUIRE(Holds(p, b, -1));  // zeros
    cm.Release(b);
  }
  REQUIRE(cm.Flush().ok());
  REQUIRE(cm.stats().nvme.bytes_in == written);
  REQUIRE(cm.stats().compute.peak <= 4 * kBytes);
}

TEST_CASE("with a keep window, released buffers leave memory until their next use is near") {
  ChunkManagerOptions o = Options(6, 0, true);
  o.transient_room = 6 * kBytes;  // room for all: only the window keeps them out
  o.keep_window = 1;
  auto m = ChunkManager::Create(o);
  REQUIRE(m.ok());
  ChunkManager& cm = **m;
  std::vector<std::vector<int>> uses;
  for (int b = 0; b < 6; ++b) uses.push_back({b});
  cm.SetSchedule(uses);
  for (int cycle = 0; cycle < 4; ++cycle) {
    for (int b = 0; b < 6; ++b) {
      cm.Advance(b);
      float* p = *cm.Access(b, ChunkManager::Mode::kWrite);
      if (cycle > 0) REQUIRE(Holds(p, b, cycle - 1));
      Fill(p, b, cycle);
      cm.Release(b);
      // Once its writes land, only what the window holds is in memory: the buffer
      // read ahead for the next position.
      REQUIRE(cm.Flush().ok());
      int resident = 0;
      for (int x = 0; x < 6; ++x) resident += cm.resident(x) ? 1 : 0;
      REQUIRE(resident <= 1);
    }
  }
  // Every buffer went out and came back every cycle after the first.
  REQUIRE(cm.stats().nvme.bytes_out >= 3 * 6 * kBytes);
}

TEST_CASE("a demand for room waits for reads ahead that fill the budget") {
  auto m = ChunkManager::Create(Options(6, 2, true));
  REQUIRE(m.ok());
  ChunkManager& cm = **m;
  for (int b = 0; b < 6; ++b) {  // every buffer on NVMe, 4 and 5 last
    Fill(*cm.Access(b, ChunkManager::Mode::kOverwrite), b, 0);
    cm.Release(b);
  }
  for (int b : {0, 1}) {  // now 0 and 1 are the ones in memory
    REQUIRE(cm.Access(b, ChunkManager::Mode::kRead).ok());
    cm.Release(b);
  }
  REQUIRE(cm.Flush().ok());
  cm.SetSchedule({{0}, {1}, {2}, {3}, {4, 5}});
  // Position 4 reads 4 and 5 ahead into both blocks; an access off the schedule (a
  // checkpoint's) then needs room while those reads may be in flight.
  cm.Advance(4);
  REQUIRE(cm.stats().prefetches == 2);
  absl::StatusOr<float*> p = cm.Access(2, ChunkManager::Mode::kRead);
  INFO(p.status().message());
  REQUIRE(p.ok());
  REQUIRE(Holds(*p, 2, 0));
  cm.Release(2);
}

TEST_CASE("budgets that cannot work are refused with the bytes") {
  ChunkManagerOptions o = Options(4, 1, false);
  auto m = ChunkManager::Create(o);
  REQUIRE(m.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(std::string(m.status().message()).find("no NVMe tier") != std::string::npos);
  o = Options(4, 2, true);
  o.pinned = {true, true, true, false};
  m = ChunkManager::Create(o);
  REQUIRE(m.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(std::string(m.status().message()).find(FormatBytes(3 * kBytes)) != std::string::npos);
  o = Options(4, 2, true);
  o.nvme_dir = "/nonexistent/colossal-nvme";
  m = ChunkManager::Create(o);
  REQUIRE_FALSE(m.ok());
  REQUIRE(std::string(m.status().message()).find("/nonexistent/colossal-nvme") != std::string::npos);
  // Every buffer in use at once cannot page.
  m = ChunkManager::Create(Options(4, 2, true));
  REQUIRE(m.ok());
  REQUIRE((*m)->Access(0, ChunkManager::Mode::kWrite).ok());
  REQUIRE((*m)->Access(1, ChunkManager::Mode::kWrite).ok());
  absl::StatusOr<float*> third = (*m)->Access(2, ChunkManager::Mode::kWrite);
  REQUIRE(third.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(std::string(third.status().message()).find("2 chunk buffers in use") != std::string::npos);
}

TEST_CASE("without a budget nothing moves") {
  auto m = ChunkManager::Create(Options(6, 0, false));
  REQUIRE(m.ok());
  for (int b = 0; b < 6; ++b) {
    Fill(*(*m)->Access(b, ChunkManager::Mode::kOverwrite), b, 0);
    (*m)->Release(b);
  }
  for (int b = 0; b < 6; ++b) {
    REQUIRE(Holds(*(*m)->Access(b, ChunkManager::Mode::kRead), b, 0));
    (*m)->Release(b);
  }
  REQUIRE((*m)->stats().evictions == 0);
}

}  // namespace
}  // namespace colossal::memory
