// Tests of the train/val split, the window loader (exact windows, wrap, shuffled
// epochs, determinism, resumption, threads) and the data-parallel sample formula.
#include "runtime/data/loader.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <thread>

namespace colossal::data {
namespace {

// A span over tokens base, base+1, ..., base+n-1.
TokenSpan Iota(int64_t n, int32_t base = 100) {
  auto v = std::make_shared<std::vector<int32_t>>(n);
  std::iota(v->begin(), v->end(), base);
  return TokenSpan(v, 0, n);
}

WindowLoader Make(TokenSpan tokens, int64_t seq_len, Shuffle shuffle, uint64_t seed) {
  auto loader = WindowLoader::Create(std::move(tokens), seq_len, shuffle, seed);
  REQUIRE(loader.ok());
  return std::move(loader).value();
}

struct Batch {
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  bool operator==(const Batch&) const = default;
};

Batch Fill(const WindowLoader& loader, int64_t first, int64_t count) {
  Batch b;
  b.inputs.assign(count * loader.seq_len(), -7);
  b.targets.assign(count * loader.seq_len(), -7);
  loader.Fill(first, count, b.inputs.data(), b.targets.data());
  return b;
}

TEST_CASE("unshuffled windows are exact and wrap at the end") {
  // 22 tokens, T = 4: W = (22 - 1) / 4 = 5 windows; tokens 120 and 121 are never read.
  WindowLoader loader = Make(Iota(22), 4, Shuffle::kNo, 0);
  REQUIRE(loader.num_windows() == 5);
  Batch b = Fill(loader, 3, 4);  // Samples 3, 4, 5, 6 -> windows 3, 4, 0, 1.
  REQUIRE(b.inputs == std::vector<int32_t>{112, 113, 114, 115, 116, 117, 118, 119,  //
                                           100, 101, 102, 103, 104, 105, 106, 107});
  REQUIRE(b.targets == std::vector<int32_t>{113, 114, 115, 116, 117, 118, 119, 120,  //
                                            101, 102, 103, 104, 105, 106, 107, 108});
  // Step s with global batch G = 3 reads windows 3s .. 3s+2 (mod 5).
  for (int64_t step = 0; step < 4; ++step) {
    for (int64_t j = 0; j < 3; ++j) REQUIRE(loader.Window(step * 3 + j) == (step * 3 + j) % 5);
  }
  REQUIRE(loader.Window(5'000'000'003) == 3);
  // The last window ends exactly at token (W*T), the 21st.
  Batch last = Fill(loader, 4, 1);
  REQUIRE(last.targets.back() == 120);
}

TEST_CASE("a slice of every window: the runs of positions in order, ids and targets alike") {
  WindowLoader loader = Make(Iota(22), 4, Shuffle::kNo, 0);
  // Samples 3 and 4 (windows 3, 4), positions {3} then {0, 1}: a zigzag-like pair of runs.
  std::vector<int32_t> ids(6), targets(6);
  loader.Fill(3, 2, ids.data(), targets.data(), {{3, 1}, {0, 2}});
  REQUIRE(ids == std::vector<int32_t>{115, 112, 113, 119, 116, 117});
  REQUIRE(targets == std::vector<int32_t>{116, 113, 114, 120, 117, 118});
  // The whole window as one run is the plain Fill.
  std::vector<int32_t> a(8), b(8);
  loader.Fill(3, 2, a.data(), b.data(), {{0, 4}});
  REQUIRE(a == Fill(loader, 3, 2).inputs);
}

TEST_CASE("seq_len 1 and the smallest corpus") {
  WindowLoader one = Make(Iota(3), 1, Shuffle::kNo, 0);
  REQUIRE(one.num_windows() == 2);
  Batch b = Fill(one, 0, 3);
  REQUIRE(b.inputs == std::vector<int32_t>{100, 101, 100});
  REQUIRE(b.targets == std::vector<int32_t>{101, 102, 101});
  WindowLoader tight = Make(Iota(5), 4, Shuffle::kYes, 9);  // Exactly T + 1 tokens.
  REQUIRE(tight.num_windows() == 1);
  REQUIRE(Fill(tight, 7, 1).targets == std::vector<int32_t>{101, 102, 103, 104});
}

TEST_CASE("a corpus too short for seq_len is an error naming both numbers") {
  auto r = WindowLoader::Create(Iota(4), 4, Shuffle::kNo, 0, "train split of kjv.txt");
  REQUIRE(r.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(r.status().message() ==
          "train split of kjv.txt: 4 tokens are too short for seq_len 4: need at least 5");
  REQUIRE(WindowLoader::Create(TokenSpan(), 8, Shuffle::kYes, 0).status().message() ==
          "corpus: 0 tokens are too short for seq_len 8: need at least 9");
  REQUIRE(WindowLoader::Create(Iota(10), 0, Shuffle::kNo, 0).status().code() ==
          absl::StatusCode::kInvalidArgument);
}

TEST_CASE("every shuffled epoch reads each window exactly once") {
  const int64_t T = 3;
  WindowLoader loader = Make(Iota(37 * T + 2), T, Shuffle::kYes, 1234);
  const int64_t W = loader.num_windows();
  REQUIRE(W == 37);
  std::vector<int64_t> previous;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    std::vector<int64_t> order;
    Batch b = Fill(loader, epoch * W, W);
    for (int64_t j = 0; j < W; ++j) {
      int64_t w = loader.Window(epoch * W + j);
      order.push_back(w);
      // The filled row is that window's tokens.
      REQUIRE(b.inputs[j * T] == 100 + w * T);
      REQUIRE(b.targets[j * T + T - 1] == 100 + w * T + T);
    }
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(W);
    std::iota(all.begin(), all.end(), 0);
    REQUIRE(sorted == all);
    REQUIRE(order != all);       // Actually shuffled...
    REQUIRE(order != previous);  // ...and differently each epoch.
    previous = order;
  }
}

TEST_CASE("the shuffled order is the Python twin's permutation (rng_test.cc)") {
  WindowLoader loader = Make(Iota(10 * 2 + 1), 2, Shuffle::kYes, 1234);
  std::vector<int64_t> epoch0, epoch1;
  for (int64_t i = 0; i < 10; ++i) epoch0.push_back(loader.Window(i));
  for (int64_t i = 10; i < 20; ++i) epoch1.push_back(loader.Window(i));
  REQUIRE(epoch0 == std::vector<int64_t>{4, 2, 5, 0, 7, 9, 1, 8, 6, 3});
  REQUIRE(epoch1 == std::vector<int64_t>{8, 5, 2, 3, 6, 1, 9, 7, 4, 0});
  auto perm = EpochPermutation(10, 1235, 0);
  REQUIRE(perm == std::vector<uint32_t>{1, 0, 6, 2, 9, 7, 3, 4, 5, 8});
}

TEST_CASE("same seed gives the same order, a different seed a different one") {
  TokenSpan tokens = Iota(1001);
  WindowLoader a = Make(tokens, 10, Shuffle::kYes, 42);
  WindowLoader b = Make(tokens, 10, Shuffle::kYes, 42);
  WindowLoader c = Make(tokens, 10, Shuffle::kYes, 43);
  REQUIRE(Fill(a, 0, 300) == Fill(b, 0, 300));
  REQUIRE_FALSE(Fill(a, 0, 100) == Fill(c, 0, 100));
  WindowLoader copy = a;  // Copies share the cache and give the same answers.
  REQUIRE(Fill(copy, 250, 20) == Fill(b, 250, 20));
}

TEST_CASE("resuming at any sample equals continuing") {
  TokenSpan tokens = Iota(7 * 5 + 3);
  for (Shuffle shuffle : {Shuffle::kNo, Shuffle::kYes}) {
    const int64_t total = 7 * 4 + 3;  // Four epochs and a bit.
    Batch whole = Fill(Make(tokens, 5, shuffle, 77), 0, total);
    for (int64_t start = 0; start <= total; ++start) {
      WindowLoader fresh = Make(tokens, 5, shuffle, 77);  // A restarted process.
      Batch rest = Fill(fresh, start, total - start);
      REQUIRE(std::equal(rest.inputs.begin(), rest.inputs.end(), whole.inputs.begin() + start * 5));
      REQUIRE(
          std::equal(rest.targets.begin(), rest.targets.end(), whole.targets.begin() + start * 5));
    }
    // Reading in uneven pieces, backwards across epochs, gives the same rows.
    WindowLoader pieces = Make(tokens, 5, shuffle, 77);
    for (int64_t start : {29, 3, 17, 0, 11}) {
      Batch part = Fill(pieces, start, 2);
      REQUIRE(std::equal(part.inputs.begin(), part.inputs.end(), whole.inputs.begin() + start * 5));
    }
  }
}

TEST_CASE("concurrent Fill from several threads across epochs is deterministic") {
  TokenSpan tokens = Iota(50 * 4 + 1);
  WindowLoader loader = Make(tokens, 4, Shuffle::kYes, 5);
  Batch expected = Fill(Make(tokens, 4, Shuffle::kYes, 5), 0, 400);
  std::vector<Batch> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Each thread reads every 4th chunk of 10, so the threads hop between epochs.
      Batch& mine = got[t];
      mine.inputs.assign(400 * 4, 0);
      mine.targets.assign(400 * 4, 0);
      for (int64_t chunk = t; chunk < 40; chunk += 4) {
        loader.Fill(chunk * 10, 10, mine.inputs.data() + chunk * 40, mine.targets.data() + chunk * 40);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    for (int64_t chunk = t; chunk < 40; chunk += 4) {
      REQUIRE(std::equal(got[t].inputs.begin() + chunk * 40, got[t].inputs.begin() + chunk * 40 + 40,
                         expected.inputs.begin() + chunk * 40));
    }
  }
}

TEST_CASE("SplitTrainVal cuts at L - floor(L * f) and shares the storage") {
  TokenStream stream;
  stream.tokens.resize(103);
  std::iota(stream.tokens.begin(), stream.tokens.end(), 0);
  stream.vocab_size = 256;
  stream.tokenizer = "bytes";
  const int32_t* original = stream.tokens.data();
  auto split = SplitTrainVal(std::move(stream), 0.1);
  REQUIRE(split.ok());
  REQUIRE(split->train.size() == 93);  // n_val = floor(10.3) = 10.
  REQUIRE(split->val.size() == 10);
  REQUIRE(split->train[0] == 0);
  REQUIRE(split->train[92] == 92);
  REQUIRE(split->val[0] == 93);
  REQUIRE(split->val[9] == 102);
  REQUIRE(split->val.offset() == 93);
  REQUIRE(split->train.data() == original);  // Moved, not copied...
  REQUIRE(split->train.storage() == split->val.storage());  // ...and shared.
  REQUIRE(split->vocab_size == 256);
  REQUIRE(split->tokenizer == "bytes");

  TokenStream small;
  small.tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  auto none = SplitTrainVal(small, 0.0);
  REQUIRE(none->train.size() == 10);
  REQUIRE(none->val.size() == 0);
  REQUIRE(none->val.span().empty());
  auto most = SplitTrainVal(small, 0.95);  // floor(9.5) = 9.
  REQUIRE(most->train.size() == 1);
  REQUIRE(most->val.size() == 9);
  REQUIRE(most->val[0] == 2);
  auto exact = SplitTrainVal(small, 0.5);
  REQUIRE(exact->train.size() == 5);
  REQUIRE(exact->val[0] == 6);

  for (double bad : {1.0, -0.1, 1.5, std::nan("")}) {
    REQUIRE(SplitTrainVal(small, bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
  REQUIRE(SplitTrainVal(TokenStream{}, 0.1).status().message() == "cannot split an empty corpus");

  // Each split feeds its own loader.
  auto train = WindowLoader::Create(split->train, 8, Shuffle::kNo, 0);
  REQUIRE(train->num_windows() == 11);
  auto val = WindowLoader::Create(split->val, 8, Shuffle::kNo, 0, "validation split");
  REQUIRE(val->num_windows() == 1);
  Batch v = Fill(*val, 0, 1);
  REQUIRE(v.inputs.front() == 93);
  REQUIRE(v.targets.back() == 101);
}

TEST_CASE("the ranks' slices of a step are exactly the one-rank step") {
  TokenSpan tokens = Iota(1000);
  WindowLoader loader = Make(tokens, 6, Shuffle::kYes, 3);
  const int64_t G = 24;
  for (int64_t D : {1, 2, 3, 4, 6, 8, 12, 24}) {
    for (int64_t b = 1; b <= G / D; ++b) {
      if ((G / D) % b != 0) continue;
      for (int64_t step : {0, 1, 7}) {
        Batch one_rank = Fill(loader, step * G, G);
        std::multiset<int64_t> seen;
        for (int64_t r = 0; r < D; ++r) {
          for (int64_t m = 0; m < G / D / b; ++m) {
            int64_t first = FirstSample(step, G, r, D, m, b);
            REQUIRE(first == step * G + r * (G / D) + m * b);
            Batch part = Fill(loader, first, b);
            int64_t row = first - step * G;
            REQUIRE(std::equal(part.inputs.begin(), part.inputs.end(),
                               one_rank.inputs.begin() + row * 6));
            for (int64_t i = first; i < first + b; ++i) seen.insert(i);
          }
        }
        std::multiset<int64_t> expected;
        for (int64_t i = step * G; i < step * G + G; ++i) expected.insert(i);
        REQUIRE(seen == expected);
      }
    }
  }
}

}  // namespace
}  // namespace colossal::data
