// Embedding: every twin (the harness) against the double reference with the header's
// tolerances: the forward an exact gather, the backward with repeated ids, ids at 0 and
// rows-1, n = 0, both accumulate modes, 1 and 2 threads, and blocks of a vocab-parallel
// table; the CPU backward bit-identical to an fp32 scatter in the order of i; the
// reference backward against finite differences.
#include <omp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "kernels/embedding/embedding.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::ArgAs;
using testing::AsDouble;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

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

TEST_CASE("embedding forward: every twin is an exact gather (the harness)") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Case& k : kCases) {
      CAPTURE(threads, k.n, k.rows, k.c);
      const auto ids = Ids(k.n, k.rows, k.distinct, 10 + k.n);
      const auto table = Random<float>(k.rows * k.c, 20 + k.c);
      std::vector<double> ref(k.n * k.c);
      EmbeddingForwardRef(ids.data(), AsDouble(table).data(), ref.data(), k.n, k.rows, k.c);
      for (int64_t i = 0; i < k.n; ++i) {  // and the reference is the gather
        for (int64_t j = 0; j < k.c; ++j) REQUIRE(ref[i * k.c + j] == table[ids[i] * k.c + j]);
      }
      TwinCase c("embedding_forward n=" + std::to_string(k.n));
      const int iid = c.InI32(ids), it = c.In(table);
      const int io = c.Out("out", std::vector<float>(k.n * k.c, -9.0f), ref, EmbeddingForwardTolerance());
      RequireNoFailures(c.Run(EmbeddingForwardTable(), [&](EmbeddingForwardFn* fn, Stream st, const auto& x) {
        fn(ArgAs<int32_t>(x, iid), ArgAs<float>(x, it), ArgAs<float>(x, io), k.n, k.rows, k.c, st);
      }));
      REQUIRE(c.ran().size() >= 2);
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("embedding backward: every twin matches the reference (the harness); cpu bit-identical to an fp32 scatter in the order of i") {
  for (const Case& k : kCases) {
    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(k.n, k.rows, k.c, acc == Accumulate::kYes);
      const auto ids = Ids(k.n, k.rows, k.distinct, 30 + k.n);
      const auto dout = Random<float>(k.n * k.c, 40 + k.c);
      const auto dtable0 = Random<float>(k.rows * k.c, 50 + k.rows);
      std::vector<double> ref = AsDouble(dtable0);
      EmbeddingBackwardRef(ids.data(), AsDouble(dout).data(), ref.data(), k.n, k.rows, k.c, acc);
      // The CPU twin's promised summation order: an fp32 scatter in the order of i.
      auto ordered = dtable0;
      if (acc == Accumulate::kNo) std::fill(ordered.begin(), ordered.end(), 0.0f);
      for (int64_t i = 0; i < k.n; ++i) {
        for (int64_t j = 0; j < k.c; ++j) ordered[ids[i] * k.c + j] += dout[i * k.c + j];
      }
      // Overwrite must not read stale values: poison them.
      const auto initial =
          acc == Accumulate::kNo ? std::vector<float>(dtable0.size(), std::numeric_limits<float>::quiet_NaN()) : dtable0;
      for (int threads : {1, 2}) {
        CAPTURE(threads);
        omp_set_num_threads(threads);
        TwinCase c("embedding_backward n=" + std::to_string(k.n));
        const int iid = c.InI32(ids), id = c.In(dout);
        const int it = c.Out("dtable", initial, ref, EmbeddingBackwardTolerance(MaxRepeat(ids)));
        RequireNoFailures(c.Run(EmbeddingBackwardTable(), [&](EmbeddingBackwardFn* fn, Stream st, const auto& x) {
          fn(ArgAs<int32_t>(x, iid), ArgAs<float>(x, id), ArgAs<float>(x, it), k.n, k.rows, k.c, acc, st);
        }));
        REQUIRE(c.Got(Backend::kCpu, it) == ordered);
      }
      omp_set_num_threads(1);
      // Rows no id references: 0 after kNo, untouched after kYes.
      std::vector<bool> used(k.rows, false);
      for (int32_t id : ids) used[id] = true;
      for (int64_t r = 0; r < k.rows; ++r) {
        if (used[r]) continue;
        for (int64_t j = 0; j < k.c; ++j) {
          REQUIRE(ref[r * k.c + j] == (acc == Accumulate::kNo ? 0.0 : dtable0[r * k.c + j]));
        }
      }
    }
  }
}

TEST_CASE("embedding ids past the block's rows give zero rows and no gradient (vocab-parallel)") {
  // A table of 6 rows split in two blocks of 3: rank 1 sees ids remapped to id - 3, and
  // ids of rank 0's block as >= 3. The reference of both blocks rebuilds the whole table's
  // forward and backward; every twin matches the reference on each block.
  const int64_t rows = 6, c = 20, n = 40, half = 3;
  const auto ids = Ids(n, rows, rows, 7);
  const auto table = Random<float>(rows * c, 8);
  const auto dout = Random<float>(n * c, 9);
  std::vector<double> whole(n * c), whole_grad(rows * c);
  EmbeddingForwardRef(ids.data(), AsDouble(table).data(), whole.data(), n, rows, c);
  EmbeddingBackwardRef(ids.data(), AsDouble(dout).data(), whole_grad.data(), n, rows, c, Accumulate::kNo);
  std::vector<double> sum(n * c, 0.0), grad(rows * c, 0.0);
  for (int64_t block = 0; block < 2; ++block) {
    CAPTURE(block);
    std::vector<int32_t> local(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = ids[i] - block * half;
      local[i] = static_cast<int32_t>(id >= 0 && id < half ? id : half + 5);
    }
    const std::vector<float> block_table(table.begin() + block * half * c, table.begin() + (block + 1) * half * c);
    std::vector<double> out(n * c), dtable(half * c);
    EmbeddingForwardRef(local.data(), AsDouble(block_table).data(), out.data(), n, half, c);
    EmbeddingBackwardRef(local.data(), AsDouble(dout).data(), dtable.data(), n, half, c, Accumulate::kNo);
    for (int64_t i = 0; i < n * c; ++i) {
      if (local[i / c] >= half) REQUIRE(out[i] == 0.0);
      sum[i] += out[i];
    }
    std::copy(dtable.begin(), dtable.end(), grad.begin() + block * half * c);

    TwinCase f("embedding_forward block");
    const int fid = f.InI32(local), ft = f.In(block_table);
    const int fo = f.Out("out", std::vector<float>(n * c, -1.0f), out, EmbeddingForwardTolerance());
    RequireNoFailures(f.Run(EmbeddingForwardTable(), [&](EmbeddingForwardFn* fn, Stream st, const auto& x) {
      fn(ArgAs<int32_t>(x, fid), ArgAs<float>(x, ft), ArgAs<float>(x, fo), n, half, c, st);
    }));
    TwinCase b("embedding_backward block");
    const int bid = b.InI32(local), bd = b.In(dout);
    const int bt = b.Out("dtable", std::vector<float>(half * c, 7.0f), dtable, EmbeddingBackwardTolerance(MaxRepeat(ids)));
    RequireNoFailures(b.Run(EmbeddingBackwardTable(), [&](EmbeddingBackwardFn* fn, Stream st, const auto& x) {
      fn(ArgAs<int32_t>(x, bid), ArgAs<float>(x, bd), ArgAs<float>(x, bt), n, half, c, Accumulate::kNo, st);
    }));
  }
  REQUIRE(sum == whole);
  auto r = AllClose(grad, whole_grad, 1e-12, 1e-12);
  INFO(r.message);
  REQUIRE(r.ok);
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
