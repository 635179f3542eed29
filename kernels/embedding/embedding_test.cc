// Embedding: the CPU forward is an exact gather; the CPU backward against the double
// reference (repeated ids, ids at 0 and rows-1, n = 0, both accumulate modes, 1 and 2
// threads), bit-identical to an fp32 scatter in the order of i; the reference backward
// against finite differences.
#include <omp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "kernels/embedding/embedding.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twins.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::Random;

// n ids in [0, rows) with many repeats (drawn from `distinct` values), forced to contain
// 0 and rows - 1.
std::vector<int32_t> Ids(int64_t n, int64_t rows, int64_t distinct, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(0, distinct - 1));
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(pick(rng) * (rows - 1) / std::max<int64_t>(1, distinct - 1));
  if (n > 0) ids[0] = 0;
  if (n > 1) ids[n - 1] = static_cast<int32_t>(rows - 1);
  if (n > 2) ids[n / 2] = static_cast<int32_t>(rows - 1);
  return ids;
}

int64_t MaxRepeat(const std::vector<int32_t>& ids) {
  std::map<int32_t, int64_t> count;
  int64_t most = 0;
  for (int32_t id : ids) most = std::max(most, ++count[id]);
  return most;
}

struct Case {
  int64_t n, rows, c, distinct;
};
const std::vector<Case> kCases = {
    {0, 5, 8, 1},        {1, 1, 1, 1},     {7, 3, 17, 3},         {64, 10, 100, 4},
    {300, 50, 64, 50},   {257, 97, 33, 7}, {512, 1000, 384, 300}, {256, 300, 768, 40},
    // rows·c >= 2^22: the overwrite's zeroing takes the streaming-store path of Fill.
    {64, 8200, 512, 60},
};

TEST_CASE("embedding forward cpu is an exact gather") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Case& k : kCases) {
      CAPTURE(threads, k.n, k.rows, k.c);
      const auto ids = Ids(k.n, k.rows, k.distinct, 10 + k.n);
      const auto table = Random<float>(k.rows * k.c, 20 + k.c);
      std::vector<float> ref(k.n * k.c), out(k.n * k.c, -9.0f);
      EmbeddingForwardRef(ids.data(), table.data(), ref.data(), k.n, k.rows, k.c);
      EmbeddingForward(ids.data(), table.data(), out.data(), k.n, k.rows, k.c);
      REQUIRE(out == ref);
      for (int64_t i = 0; i < k.n; ++i) {  // and the reference is the gather
        for (int64_t j = 0; j < k.c; ++j) REQUIRE(ref[i * k.c + j] == table[ids[i] * k.c + j]);
      }
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("embedding backward cpu matches the reference, deterministically") {
  for (const Case& k : kCases) {
    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(k.n, k.rows, k.c, acc == Accumulate::kYes);
      const auto ids = Ids(k.n, k.rows, k.distinct, 30 + k.n);
      const auto dout = Random<float>(k.n * k.c, 40 + k.c);
      const auto dtable0 = Random<float>(k.rows * k.c, 50 + k.rows);
      // Contract tolerance: fp32 vs double sums of up to n_dup terms (+ the old value).
      const double tol = 1e-6 * std::max<int64_t>(1, MaxRepeat(ids));

      auto ref = dtable0;
      EmbeddingBackwardRef(ids.data(), dout.data(), ref.data(), k.n, k.rows, k.c, acc);
      // fp32 scatter in the order of i: the CPU twin's promised summation order.
      auto ordered = dtable0;
      if (acc == Accumulate::kNo) std::fill(ordered.begin(), ordered.end(), 0.0f);
      for (int64_t i = 0; i < k.n; ++i) {
        for (int64_t j = 0; j < k.c; ++j) ordered[ids[i] * k.c + j] += dout[i * k.c + j];
      }

      for (int threads : {1, 2}) {
        CAPTURE(threads);
        omp_set_num_threads(threads);
        auto dtable = dtable0;
        // Overwrite must not read stale values: poison them.
        if (acc == Accumulate::kNo) {
          std::fill(dtable.begin(), dtable.end(), std::numeric_limits<float>::quiet_NaN());
        }
        EmbeddingBackward(ids.data(), dout.data(), dtable.data(), k.n, k.rows, k.c, acc);
        auto r = AllClose(dtable, ref, tol, tol);
        INFO(r.message);
        REQUIRE(r.ok);
        REQUIRE(dtable == ordered);
      }
      omp_set_num_threads(1);
      // Rows no id references: 0 after kNo, untouched after kYes.
      std::vector<bool> used(k.rows, false);
      for (int32_t id : ids) used[id] = true;
      for (int64_t r = 0; r < k.rows; ++r) {
        if (used[r]) continue;
        for (int64_t j = 0; j < k.c; ++j) {
          REQUIRE(ref[r * k.c + j] == (acc == Accumulate::kNo ? 0.0f : dtable0[r * k.c + j]));
        }
      }
    }
  }
}

TEST_CASE("embedding ids past the block's rows give zero rows and no gradient (vocab-parallel)") {
  // A table of 6 rows split in two blocks of 3: rank 1 sees ids remapped to id - 3, and
  // ids of rank 0's block as >= 3. Forward and backward of both blocks rebuild the whole.
  const int64_t rows = 6, c = 20, n = 40, half = 3;
  const auto ids = Ids(n, rows, rows, 7);
  const auto table = Random<float>(rows * c, 8);
  const auto dout = Random<float>(n * c, 9);
  std::vector<float> whole(n * c), whole_grad(rows * c);
  EmbeddingForwardRef(ids.data(), table.data(), whole.data(), n, rows, c);
  EmbeddingBackwardRef(ids.data(), dout.data(), whole_grad.data(), n, rows, c, Accumulate::kNo);
  for (Backend backend : testing::Twins(EmbeddingForwardTable())) {
    CAPTURE(std::string(BackendName(backend)));
    std::vector<float> sum(n * c, 0.0f), grad(rows * c, 0.0f);
    for (int64_t block = 0; block < 2; ++block) {
      std::vector<int32_t> local(n);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t id = ids[i] - block * half;
        local[i] = static_cast<int32_t>(id >= 0 && id < half ? id : half + 5);
      }
      std::vector<float> out(n * c, -1.0f), dtable(half * c, 7.0f);
      EmbeddingForward(local.data(), table.data() + block * half * c, out.data(), n, half, c,
                       {backend});
      EmbeddingBackward(local.data(), dout.data(), dtable.data(), n, half, c, Accumulate::kNo,
                        {backend});
      for (int64_t i = 0; i < n * c; ++i) {
        if (local[i / c] >= half) REQUIRE(out[i] == 0.0f);
        sum[i] += out[i];
      }
      std::copy(dtable.begin(), dtable.end(), grad.begin() + block * half * c);
    }
    REQUIRE(sum == whole);
    auto r = AllClose(grad, whole_grad, 1e-5, 1e-5);
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("embedding reference backward sums repeated ids (hand-computed)") {
  // ids = [2, 0, 2], c = 2, rows = 3.
  const std::vector<int32_t> ids = {2, 0, 2};
  const std::vector<double> dout = {1, 2, 3, 4, 5, 6};
  std::vector<double> dtable = {9, 9, 9, 9, 9, 9};
  EmbeddingBackwardRef(ids.data(), dout.data(), dtable.data(), 3, 3, 2, Accumulate::kNo);
  REQUIRE(dtable == std::vector<double>{3, 4, 0, 0, 6, 8});
  EmbeddingBackwardRef(ids.data(), dout.data(), dtable.data(), 3, 3, 2, Accumulate::kYes);
  REQUIRE(dtable == std::vector<double>{6, 8, 0, 0, 12, 16});
}

TEST_CASE("embedding reference backward matches finite differences") {
  const int64_t n = 9, rows = 5, c = 3;
  const std::vector<int32_t> ids = {4, 0, 2, 4, 4, 1, 0, 2, 4};  // row 3 unused
  auto table = Random<double>(rows * c, 60);
  const auto g = Random<double>(n * c, 61);
  std::vector<double> out(n * c);
  auto loss = [&] {
    EmbeddingForwardRef(ids.data(), table.data(), out.data(), n, rows, c);
    return testing::Dot(g, out);
  };
  const auto numeric = testing::FiniteDifference(table, loss);
  std::vector<double> analytic(rows * c);
  EmbeddingBackwardRef(ids.data(), g.data(), analytic.data(), n, rows, c, Accumulate::kNo);
  // L is linear in the table: central differences are exact up to the rounding of L
  // (~1e-16 · |L| / h, h = 1e-6).
  auto r = AllClose(analytic, numeric, 1e-8, 1e-8);
  INFO(r.message);
  REQUIRE(r.ok);
}

}  // namespace
}  // namespace colossal::kernels
