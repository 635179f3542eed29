// Blockwise attention: the contract against the whole-sequence attention reference (one
// block over the sequence is causal attention; key blocks merged by their log-sum-exp
// and the backward summed over key blocks give the same output and gradients), the
// reference against finite differences, and every twin (the harness) against the double
// reference over odd sizes, offsets (rows that see part of a block, none of it, or all),
// the first block and a merge into a prior one; the backward's delta table likewise, its
// CPU twin bit for bit against the host template the backward op called before.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
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

void Require(const testing::CloseResult& r, const char* what) {
  INFO(what << ": " << r.message);
  REQUIRE(r.ok);
}

// A block view into one sequence's fused qkv [T, 3C] (q at column 0, k at C, v at 2C):
// queries rows [q0, q0 + tq), keys rows [k0, k0 + tk); out [tq, C].
struct Views {
  BlockAttentionShape s;
  int64_t q_at = 0, k_at = 0;  // element offsets of the first query / key row
};
Views ViewOf(int64_t H, int64_t D, int64_t q0, int64_t tq, int64_t k0, int64_t tk) {
  const int64_t C = H * D;
  return {{1, H, D, tq, tk, q0, k0, 3 * C, 3 * C, C}, q0 * 3 * C, k0 * 3 * C + C};
}

TEST_CASE("block attention: one block over the sequence is causal attention; key blocks merge") {
  const AttentionShape whole{1, 37, 3, 8};
  const int64_t T = whole.seq, C = whole.channels();
  auto qkv = Random<double>(T * 3 * C, 11, -1.5, 1.5);
  auto dout = Random<double>(T * C, 12);
  std::vector<double> out_ref(T * C), probs(whole.heads * T * T), dqkv_ref(T * 3 * C);
  AttentionForwardRef(qkv.data(), out_ref.data(), probs.data(), whole);
  AttentionBackwardRef(dout.data(), qkv.data(), probs.data(), dqkv_ref.data(), whole, Accumulate::kNo);

  // Key blocks [0, 10), [10, 37) in either order, merged into one output.
  for (bool reversed : {false, true}) {
    CAPTURE(reversed);
    std::vector<double> out(T * C, std::nan("")), lse(whole.heads * T, std::nan(""));
    std::vector<std::pair<int64_t, int64_t>> blocks = {{0, 10}, {10, 27}};
    if (reversed) std::swap(blocks[0], blocks[1]);
    bool first = true;
    for (auto [k0, tk] : blocks) {
      Views v = ViewOf(whole.heads, whole.head_dim, 0, T, k0, tk);
      BlockAttentionForwardRef(qkv.data() + v.q_at, qkv.data() + v.k_at, qkv.data() + v.k_at + C, out.data(),
                               lse.data(), first, v.s);
      first = false;
    }
    Require(AllClose(out, out_ref, 1e-12, 1e-12), "out");
    std::vector<double> delta(whole.heads * T), dqkv(T * 3 * C, 0.0);
    Views all = ViewOf(whole.heads, whole.head_dim, 0, T, 0, T);
    BlockAttentionDelta(dout.data(), out.data(), delta.data(), all.s);
    // Query blocks [0, 20), [20, 37) against each key block: every pair's gradients add.
    for (auto [q0, tq] : std::vector<std::pair<int64_t, int64_t>>{{0, 20}, {20, 17}}) {
      for (auto [k0, tk] : blocks) {
        Views v = ViewOf(whole.heads, whole.head_dim, q0, tq, k0, tk);
        std::vector<double> lse_q(whole.heads * tq), delta_q(whole.heads * tq);
        for (int64_t h = 0; h < whole.heads; ++h) {
          for (int64_t t = 0; t < tq; ++t) {
            lse_q[h * tq + t] = lse[h * T + q0 + t];
            delta_q[h * tq + t] = delta[h * T + q0 + t];
          }
        }
        BlockAttentionBackwardRef(dout.data() + q0 * C, qkv.data() + v.q_at, qkv.data() + v.k_at,
                                  qkv.data() + v.k_at + C, lse_q.data(), delta_q.data(), dqkv.data() + v.q_at,
                                  dqkv.data() + v.k_at, dqkv.data() + v.k_at + C, v.s);
      }
    }
    Require(AllClose(dqkv, dqkv_ref, 1e-12, 1e-12), "dqkv");
  }
}

TEST_CASE("block attention: the reference backward matches finite differences") {
  // Queries [3, 8) against keys [0, 6) and a second key block [6, 9): partly, fully and
  // not at all visible rows.
  const int64_t H = 2, D = 3, C = H * D, T = 9;
  auto qkv = Random<double>(T * 3 * C, 21, -1.5, 1.5);
  auto g = Random<double>(5 * C, 22);
  const Views a = ViewOf(H, D, 3, 5, 0, 6), b = ViewOf(H, D, 3, 5, 6, 3);
  std::vector<double> out(5 * C), lse(H * 5);
  auto loss = [&] {
    BlockAttentionForwardRef(qkv.data() + a.q_at, qkv.data() + a.k_at, qkv.data() + a.k_at + C, out.data(),
                             lse.data(), true, a.s);
    BlockAttentionForwardRef(qkv.data() + b.q_at, qkv.data() + b.k_at, qkv.data() + b.k_at + C, out.data(),
                             lse.data(), false, b.s);
    return testing::Dot(g, out);
  };
  auto numeric = testing::FiniteDifference(qkv, loss);
  loss();
  std::vector<double> delta(H * 5), analytic(T * 3 * C, 0.0);
  BlockAttentionDelta(g.data(), out.data(), delta.data(), a.s);
  for (const Views* v : {&a, &b}) {
    BlockAttentionBackwardRef(g.data(), qkv.data() + v->q_at, qkv.data() + v->k_at, qkv.data() + v->k_at + C,
                              lse.data(), delta.data(), analytic.data() + v->q_at, analytic.data() + v->k_at,
                              analytic.data() + v->k_at + C, v->s);
  }
  Require(AllClose(analytic, numeric, 1e-8, 1e-6), "dqkv");
}

// Every twin against the double reference: compact q, k, v blocks with batches.
void CompareTwins(const BlockAttentionShape& s, bool first, uint64_t seed) {
  CAPTURE(s.batch, s.heads, s.head_dim, s.q_len, s.kv_len, s.q_offset, s.k_offset, first, omp_get_max_threads());
  const std::string name = " B=" + std::to_string(s.batch) + " H=" + std::to_string(s.heads) +
                           " D=" + std::to_string(s.head_dim) + " Tq=" + std::to_string(s.q_len) +
                           " Tk=" + std::to_string(s.kv_len) + " offsets " + std::to_string(s.q_offset) + "/" +
                           std::to_string(s.k_offset) + (first ? " first" : " merge");
  const int64_t C = s.channels();
  const auto q = Random<float>(s.batch * s.q_len * s.q_stride, seed, -1.5, 1.5);
  const auto k = Random<float>(s.batch * s.kv_len * s.kv_stride, seed + 1, -1.5, 1.5);
  const auto v = Random<float>(s.batch * s.kv_len * s.kv_stride, seed + 2);
  const auto dout = Random<float>(s.batch * s.q_len * s.out_stride, seed + 3);
  // A prior partial result (another key block's): its lse, some rows with none (-inf).
  auto prior_out = Random<float>(s.batch * s.q_len * s.out_stride, seed + 4);
  auto prior_lse = Random<float>(s.batch * s.heads * s.q_len, seed + 5, -1.0, 2.0);
  for (size_t i = 0; i < prior_lse.size(); i += 5) {
    prior_lse[i] = -std::numeric_limits<float>::infinity();
    const int64_t row = static_cast<int64_t>(i) % s.q_len, bh = static_cast<int64_t>(i) / s.q_len;
    const int64_t at = ((bh / s.heads) * s.q_len + row) * s.out_stride + (bh % s.heads) * s.head_dim;
    for (int64_t d = 0; d < s.head_dim; ++d) prior_out[at + d] = 0.0f;
  }
  std::vector<double> out_ref = AsDouble(prior_out), lse_ref = AsDouble(prior_lse);
  BlockAttentionForwardRef(AsDouble(q).data(), AsDouble(k).data(), AsDouble(v).data(), out_ref.data(), lse_ref.data(),
                           first, s);
  const Tolerance ft = AttentionForwardTolerance(s.Whole());
  {
    TwinCase f("block_attention_forward" + name);
    const int iq = f.In(q), ik = f.In(k), iv = f.In(v);
    // The first block must not read out: its rows start as NaN (the padding between rows
    // of a strided view stays as it was).
    std::vector<float> initial = prior_out;
    if (first) {
      for (size_t i = 0; i < initial.size(); ++i) {
        if (static_cast<int64_t>(i) % s.out_stride < C) initial[i] = std::nanf("");
      }
    }
    const int io = f.Out("out", initial, out_ref, ft);
    const int il = f.Out("lse", first ? std::vector<float>(prior_lse.size(), std::nanf("")) : prior_lse, lse_ref, ft);
    RequireNoFailures(f.Run(BlockAttentionForwardTable(), [&](BlockAttentionForwardFn* fn, Stream st, const auto& x) {
      fn(ArgAs<float>(x, iq), ArgAs<float>(x, ik), ArgAs<float>(x, iv), ArgAs<float>(x, io), ArgAs<float>(x, il),
         first, s, st);
    }));
    REQUIRE(f.ran().size() >= 2);
  }
  if (!first) return;
  // Backward of this block alone (its lse is the whole lse of a one-block attention).
  const auto out = testing::Cast<float>(out_ref);
  const auto lse = testing::Cast<float>(lse_ref);
  std::vector<float> delta(s.batch * s.heads * s.q_len);
  BlockAttentionDelta(dout.data(), out.data(), delta.data(), s);
  {
    // The delta table on every twin against the double reference; the cpu twin is the
    // float template above bit for bit (the same sequential double sum per row).
    std::vector<double> delta_ref(delta.size());
    BlockAttentionDelta(AsDouble(dout).data(), AsDouble(out).data(), delta_ref.data(), s);
    TwinCase d("block_attention_delta" + name);
    const int id = d.In(dout), io = d.In(out);
    const int oe = d.Out("delta", std::vector<float>(delta.size(), std::nanf("")), delta_ref,
                         BlockAttentionDeltaTolerance(s));
    RequireNoFailures(d.Run(BlockAttentionDeltaTable(), [&](BlockAttentionDeltaFn* fn, Stream st, const auto& x) {
      fn(ArgAs<float>(x, id), ArgAs<float>(x, io), ArgAs<float>(x, oe), s, st);
    }));
    REQUIRE(d.Got(Backend::kCpu, oe) == delta);
  }
  const auto prior_dq = Random<float>(q.size(), seed + 6), prior_dk = Random<float>(k.size(), seed + 7),
             prior_dv = Random<float>(v.size(), seed + 8);
  std::vector<double> dq_ref = AsDouble(prior_dq), dk_ref = AsDouble(prior_dk), dv_ref = AsDouble(prior_dv);
  BlockAttentionBackwardRef(AsDouble(dout).data(), AsDouble(q).data(), AsDouble(k).data(), AsDouble(v).data(),
                            AsDouble(lse).data(), AsDouble(delta).data(), dq_ref.data(), dk_ref.data(), dv_ref.data(),
                            s);
  const Tolerance bt = AttentionBackwardTolerance(s.Whole());
  TwinCase b("block_attention_backward" + name);
  const int id = b.In(dout), iq = b.In(q), ik = b.In(k), iv = b.In(v), il = b.In(lse), ie = b.In(delta);
  const int oq = b.Out("dq", prior_dq, dq_ref, bt), ok = b.Out("dk", prior_dk, dk_ref, bt),
            ov = b.Out("dv", prior_dv, dv_ref, bt);
  RequireNoFailures(b.Run(BlockAttentionBackwardTable(), [&](BlockAttentionBackwardFn* fn, Stream st, const auto& x) {
    fn(ArgAs<float>(x, id), ArgAs<float>(x, iq), ArgAs<float>(x, ik), ArgAs<float>(x, iv), ArgAs<float>(x, il),
       ArgAs<float>(x, ie), ArgAs<float>(x, oq), ArgAs<float>(x, ok), ArgAs<float>(x, ov), s, st);
  }));
}

TEST_CASE("block attention: every twin matches the reference (the harness)") {
  struct Case {
    int64_t B, H, D, tq, tk, q0, k0, pad;  // pad: extra elements per row (strided views)
  };
  const Case cases[] = {
      {1, 1, 8, 1, 1, 0, 0, 0},       {2, 3, 16, 37, 37, 0, 0, 0},   {1, 2, 8, 70, 130, 130, 0, 5},
      {2, 2, 16, 65, 64, 64, 64, 0},  {1, 1, 64, 129, 67, 40, 100, 3}, {3, 2, 8, 33, 20, 0, 50, 0},
      {1, 4, 16, 200, 200, 0, 0, 16}, {2, 1, 32, 5, 140, 139, 0, 1},
  };
  uint64_t seed = 300;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Case& c : cases) {
      const int64_t C = c.H * c.D;
      BlockAttentionShape s{c.B, c.H, c.D, c.tq, c.tk, c.q0, c.k0, C + c.pad, C + 2 * c.pad, C + c.pad};
      for (bool first : {true, false}) CompareTwins(s, first, seed += 10);
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
