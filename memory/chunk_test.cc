// Chunk packing against a brute-force check of its invariants, and the size search
// against an exhaustive scan of the same candidates.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>

#include "memory/chunk.h"

namespace colossal::memory {
namespace {

int64_t Aligned(int64_t n) { return (n + 15) / 16 * 16; }

// Every tensor inside its chunk, aligned, none overlapping, chunks filled in `order`, and
// no tensor in a later chunk that would have fit the chunk open before it (next-fit).
void CheckLayout(const ChunkLayout& l, const std::vector<int64_t>& numel, const std::vector<int>& order) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> spans(l.num_chunks());
  int last_chunk = 0;
  for (int p : order) {
    const ChunkPlace& pl = l.place(p);
    REQUIRE(pl.chunk >= last_chunk);  // first-use order is kept
    last_chunk = pl.chunk;
    REQUIRE(pl.offset % 16 == 0);
    REQUIRE(pl.offset + numel[p] <= l.capacity(pl.chunk));
    if (Aligned(numel[p]) > l.chunk_numel()) {
      REQUIRE(l.params(pl.chunk) == std::vector<int>{p});
      REQUIRE(l.capacity(pl.chunk) % l.chunk_numel() == 0);
      REQUIRE(l.capacity(pl.chunk) - Aligned(numel[p]) < l.chunk_numel());
    } else {
      REQUIRE(l.capacity(pl.chunk) == l.chunk_numel());
    }
    spans[pl.chunk].push_back({pl.offset, pl.offset + numel[p]});
  }
  for (auto& s : spans) {
    std::sort(s.begin(), s.end());
    for (size_t i = 1; i < s.size(); ++i) REQUIRE(s[i - 1].second <= s[i].first);
  }
  int64_t sum = std::accumulate(numel.begin(), numel.end(), int64_t{0});
  REQUIRE(l.wasted() == l.total_capacity() - sum);
  // Next-fit: each regular chunk after the first could not take its first tensor in the
  // regular chunk before it.
  int prev = -1;
  for (int c = 0; c < l.num_chunks(); ++c) {
    if (l.capacity(c) != l.chunk_numel() || Aligned(numel[l.params(c).front()]) > l.chunk_numel()) continue;
    if (prev >= 0 && c == prev + 1) REQUIRE(l.used(prev) + Aligned(numel[l.params(c).front()]) > l.chunk_numel());
    prev = c;
  }
}

TEST_CASE("chunks keep first-use order, alignment and next-fit packing") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 40);
    std::vector<int64_t> numel(n);
    for (auto& x : numel) x = 1 + static_cast<int64_t>(rng() % (trial % 5 == 0 ? 5000 : 900));
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const int64_t chunk = 16 * (8 + static_cast<int64_t>(rng() % 100));
    absl::StatusOr<ChunkLayout> l = ChunkLayout::Pack(numel, order, chunk);
    REQUIRE(l.ok());
    CheckLayout(*l, numel, order);
  }
}

TEST_CASE("a tensor larger than the chunk size gets a chunk of its own") {
  absl::StatusOr<ChunkLayout> l = ChunkLayout::Pack({100, 5000, 100}, {0, 1, 2}, 1024);
  REQUIRE(l.ok());
  REQUIRE(l->num_chunks() == 3);
  REQUIRE(l->capacity(1) == 5120);
  REQUIRE(l->place(2).chunk == 2);  // the chunk before the large one is not reopened
}

TEST_CASE("bad orders and sizes are refused") {
  REQUIRE(ChunkLayout::Pack({1, 2}, {0, 0}, 64).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(ChunkLayout::Pack({1, 2}, {0}, 64).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(ChunkLayout::Pack({1, 2}, {0, 1}, 40).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("the size search returns the least wasteful candidate") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 10; ++trial) {
    std::vector<int64_t> numel(60);
    for (auto& x : numel) x = 100 + static_cast<int64_t>(rng() % 3000);
    std::vector<int> order(numel.size());
    std::iota(order.begin(), order.end(), 0);
    const ChunkSearch search{4096, 8192, 128};
    const int64_t best = SearchChunkNumel(numel, order, search);
    REQUIRE(best % 128 == 0);
    REQUIRE(best >= 4096);
    REQUIRE(best <= 8192);
    const int64_t best_waste = ChunkLayout::Pack(numel, order, best)->wasted();
    // 33 candidates: the search tries every one.
    for (int64_t c = 4096; c <= 8192; c += 128) REQUIRE(ChunkLayout::Pack(numel, order, c)->wasted() >= best_waste);
  }
}

TEST_CASE("the default search range scales with the model") {
  const ChunkSearch small = DefaultChunkSearch(1000, 1024);
  REQUIRE(small.min_numel == 16384);  // 64 KiB
  const ChunkSearch big = DefaultChunkSearch(int64_t{1} << 34, 1024);
  REQUIRE(big.min_numel == (int64_t{32} << 20) / 4);
  REQUIRE(big.max_numel == 2 * big.min_numel);
  const ChunkSearch mid = DefaultChunkSearch(int64_t{124} << 20, 1024);
  REQUIRE(mid.min_numel % 1024 == 0);
  REQUIRE(mid.min_numel == ((int64_t{124} << 20) / 16) / 1024 * 1024);
}

}  // namespace
}  // namespace colossal::memory
