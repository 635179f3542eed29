// Sequence parallelism as graph ops over the process group named by "group" (the
// sequence group: S ranks, each holding T/S positions of every window as
// parallel::SequenceLayout says — attrs `seq` (T) and `zigzag`).
//
//   ring_attention          qkv [B, N, 3C] (N = T/S, this rank's rows) → out [B, N, C],
//                           lse [B, K, H, T/(S·K)] (K chunks per rank). Causal attention
//                           of this rank's queries over every rank's keys: the K|V rows
//                           travel around the ring (rank r sends to r + 1), the next
//                           transfer posted before the current block's compute, each
//                           visiting block merged into (out, lse) by its log-sum-exp
//                           (kernels/attention BlockAttention*). Blocks wholly above the
//                           diagonal are skipped: with the zigzag layout every rank does
//                           the same work per step.
//   ring_attention_backward dout, qkv, out, lse → dqkv. The K|V rows go around again;
//                           each rank's queries' part of a visiting block's dK|dV goes
//                           straight home to the block's rank while the next block is
//                           computed, and is added there. dQ stays local.
//   seq_to_heads            (Ulysses) qkv [B, N, 3C] of H heads → [B, T, 3C/S]: every
//                           position of this rank's H/S heads (head block s of each of
//                           q, k, v), by one all-to-all. Backward: heads_to_seq.
//   heads_to_seq            [B, T, C/S] of head block s → [B, N, C]: this rank's rows of
//                           every head, by one all-to-all. Backward: seq_to_heads.
// attrs: group, n_head (ring: this rank's heads), seq, zigzag; the exchanges also `parts`
// (S) and `groups` (3 for packed q|k|v, 1 for an attention output).
#include <algorithm>
#include <cstring>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "parallel/sequence/sequence_layout.h"

namespace colossal::graph::ops {
namespace {

// Point-to-point tags of the ring (one op's transfers are waited for before it returns).
constexpr int kTagKv = 1, kTagKvBack = 2, kTagDkv = 3;

parallel::SequenceLayout LayoutOf(const KernelContext& c) {
  COL_CHECK_MSG(c.comm->size() == c.node->IntAttr("parts"), "a sequence op's group differs from its attr parts");
  return {c.node->IntAttr("seq"), c.comm->size(), c.comm->rank(), c.node->IntAttr("zigzag") != 0};
}

absl::StatusOr<parallel::SequenceLayout> LayoutAttrs(const std::string& op, const Attrs& attrs, int64_t local_rows,
                                                     int64_t parts) {
  RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
  ASSIGN_OR_RETURN(int64_t seq, GetIntAttr(attrs, op, "seq"));
  ASSIGN_OR_RETURN(int64_t zigzag, GetIntAttr(attrs, op, "zigzag"));
  parallel::SequenceLayout l{seq, parts, 0, zigzag != 0};
  if (parts < 1) return ShapeError(op, absl::StrCat("parts must be >= 1, got ", parts));
  if (absl::Status s = parallel::CheckSequenceLayout(l); !s.ok()) return ShapeError(op, std::string(s.message()));
  if (local_rows != l.local_len()) {
    return ShapeError(op, absl::StrCat("a rank holds ", l.local_len(), " of the ", seq, " positions, got ",
                                       local_rows, " rows"));
  }
  return l;
}

// One (query chunk, key chunk) pair of the ring: the kernel's shape, or false when every
// key is after every query (nothing to do).
bool PairShape(const parallel::SequenceLayout& l, int64_t src, int64_t qi, int64_t ki, int64_t heads,
               int64_t head_dim, kernels::BlockAttentionShape* s) {
  const int64_t n = l.chunk_len(), C = heads * head_dim;
  *s = {1, heads, head_dim, n, n, l.ChunkStart(l.part, qi), l.ChunkStart(src, ki), 3 * C, 2 * C, C};
  return s->k_offset <= s->q_offset + n - 1;
}

// kv [B, N, 2C] ← the k and v columns of qkv [B, N, 3C].
void PackKv(const float* qkv, float* kv, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(kv + r * 2 * C, qkv + r * 3 * C + C, 2 * C * sizeof(float));
}

// A ring op's sizes: qkv [B, N, 3C] of H heads of D, K chunks of n rows per rank, rank r of S.
struct Ring {
  parallel::SequenceLayout l;
  int64_t B, N, C, H, D, K, n, S, r;
  Ring(const KernelContext& c, const Shape& qkv)
      : l(LayoutOf(c)), B(qkv[0]), N(qkv[1]), C(qkv[2] / 3), H(c.node->IntAttr("n_head")), D(C / H),
        K(l.chunks()), n(l.chunk_len()), S(l.parts), r(l.part) {}
  // fn(q_row, k_row, stats, shape) for every (batch entry, query chunk, key chunk of rank
  // `src`) pair with a visible key: the rows of the chunks' first positions (b·N + i·n),
  // the offset of the query chunk's [H, n] statistics, the kernel's shape.
  template <typename Fn>
  void ForEachPair(int64_t src, Fn fn) const {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t qi = 0; qi < K; ++qi) {
        for (int64_t ki = 0; ki < K; ++ki) {
          kernels::BlockAttentionShape s;
          if (PairShape(l, src, qi, ki, H, D, &s)) fn(b * N + qi * n, b * N + ki * n, (b * K + qi) * H * n, s);
        }
      }
    }
  }
};

void RingForward(const KernelContext& c) {
  const Ring ring(c, c.in_value(0).shape);
  const int64_t B = ring.B, N = ring.N, C = ring.C, K = ring.K, S = ring.S, r = ring.r;
  const float* qkv = c.in(0);
  float* out = c.out(0);
  float* lse = c.out(1);
  float* cur = static_cast<float*>(c.scratch);
  float* nxt = cur + B * N * 2 * C;
  const int64_t bytes = B * N * 2 * C * static_cast<int64_t>(sizeof(float));
  PackKv(qkv, cur, B * N, C);
  std::vector<char> written(B * K, 0);
  for (int64_t step = 0; step < S; ++step) {
    const int64_t src = (r - step + S) % S;
    std::unique_ptr<parallel::Work> send, recv;
    if (step + 1 < S) {  // the next block travels while this one is computed
      send = c.comm->Send(cur, bytes, static_cast<int>((r + 1) % S), kTagKv);
      recv = c.comm->Recv(nxt, bytes, static_cast<int>((r - 1 + S) % S), kTagKv);
    }
    ring.ForEachPair(src, [&](int64_t q_row, int64_t k_row, int64_t stats, const kernels::BlockAttentionShape& s) {
      char& first = written[q_row / ring.n];  // (b · K + qi)
      kernels::BlockAttentionForward(qkv + q_row * 3 * C, cur + k_row * 2 * C, cur + k_row * 2 * C + C,
                                     out + q_row * C, lse + stats, first == 0, s, c.stream);
      first = 1;
    });
    if (send && !(c.Wait(std::move(send)) & c.Wait(std::move(recv)))) return;
    std::swap(cur, nxt);
  }
}

// Adds kv-packed dK|dV rows [B·N, 2C] into the k and v columns of dqkv [B·N, 3C].
void AddKvInto(const float* dkv, float* dqkv, int64_t rows, int64_t C, kernels::Stream stream) {
  for (int64_t row = 0; row < rows; ++row) {
    kernels::AddInto(dkv + row * 2 * C, dqkv + row * 3 * C + C, 2 * C, kernels::Accumulate::kYes, stream);
  }
}

// The backward. Step s: this rank holds block r − s (K|V passed on around the ring as in
// the forward, the next one in flight during the compute) and computes its queries' part
// of that block's dK|dV, which it sends straight home to rank r − s while it computes
// step s + 1; meanwhile the part of its own block from rank r + s arrives and is added.
// Only the last step's exchange is waited for without compute to hide it.
void RingBackward(const KernelContext& c) {
  const Ring ring(c, c.in_value(1).shape);
  const int64_t B = ring.B, N = ring.N, C = ring.C, H = ring.H, D = ring.D, K = ring.K, n = ring.n, S = ring.S,
                r = ring.r;
  const float* dout = c.in(0);
  const float* qkv = c.in(1);
  const float* out = c.in(2);
  const float* lse = c.in(3);
  float* dqkv = c.out(0);
  const int64_t kv_n = B * N * 2 * C;
  float* delta = static_cast<float*>(c.scratch);
  float* kv = delta + B * H * N;
  float* kv_next = kv + kv_n;
  float* part[2] = {kv_next + kv_n, kv_next + 2 * kv_n};  // this step's and the last one's, in flight
  float* arrived = kv_next + 3 * kv_n;                     // a part of this rank's own block
  const int64_t bytes = kv_n * static_cast<int64_t>(sizeof(float));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t qi = 0; qi < K; ++qi) {
      const int64_t row = b * N + qi * n;
      const kernels::BlockAttentionShape s{1, H, D, n, n, 0, 0, 3 * C, 2 * C, C};
      kernels::BlockAttentionDelta(dout + row * C, out + row * C, delta + (b * K + qi) * H * n, s);
    }
  }
  // dQ accumulates in place, dK|dV are added in as their parts come.
  if (c.accumulate[0] == kernels::Accumulate::kNo) kernels::Fill(dqkv, B * N * 3 * C, 0.0f, c.stream);
  PackKv(qkv, kv, B * N, C);
  const int next = static_cast<int>((r + 1) % S), prev = static_cast<int>((r - 1 + S) % S);
  std::unique_ptr<parallel::Work> part_sent, part_came;  // the last step's
  auto finish_last = [&]() {
    if (!part_sent) return true;
    const bool ok = c.Wait(std::move(part_sent)) & c.Wait(std::move(part_came));
    if (ok) AddKvInto(arrived, dqkv, B * N, C, c.stream);
    return ok;
  };
  for (int64_t step = 0; step < S; ++step) {
    const int64_t src = (r - step + S) % S;
    std::unique_ptr<parallel::Work> send, recv;
    if (step + 1 < S) {
      send = c.comm->Send(kv, bytes, next, kTagKvBack);
      recv = c.comm->Recv(kv_next, bytes, prev, kTagKvBack);
    }
    float* dkv = part[step % 2];  // its send two steps ago has been waited for
    kernels::Fill(dkv, kv_n, 0.0f, c.stream);
    ring.ForEachPair(src, [&](int64_t q_row, int64_t k_row, int64_t stats, const kernels::BlockAttentionShape& s) {
      kernels::BlockAttentionBackward(dout + q_row * C, qkv + q_row * 3 * C, kv + k_row * 2 * C, kv + k_row * 2 * C + C,
                                      lse + stats, delta + stats, dqkv + q_row * 3 * C, dkv + k_row * 2 * C,
                                      dkv + k_row * 2 * C + C, s, c.stream);
    });
    bool ok = finish_last();  // the previous step's exchange, hidden behind this compute
    if (step == 0) {
      AddKvInto(dkv, dqkv, B * N, C, c.stream);  // this rank's own block
    } else if (ok) {
      part_sent = c.comm->Send(dkv, bytes, static_cast<int>(src), kTagDkv);
      part_came = c.comm->Recv(arrived, bytes, static_cast<int>((r + step) % S), kTagDkv);
    }
    if (send) ok = (c.Wait(std::move(send)) & c.Wait(std::move(recv))) && ok;
    if (!ok) return;
    std::swap(kv, kv_next);
  }
  finish_last();
}

const OpRegistrar kRingAttention(OpDef{
    .name = "ring_attention",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "ring_attention";
      ASSIGN_OR_RETURN(int64_t heads, CheckQkv(op, in[0], attrs));
      ASSIGN_OR_RETURN(int64_t parts, GetIntAttr(attrs, op, "parts"));
      const Shape& s = in[0].shape;
      ASSIGN_OR_RETURN(parallel::SequenceLayout l, LayoutAttrs(op, attrs, s[1], parts));
      return std::vector<TensorType>{{{s[0], s[1], s[2] / 3}, DType::kF32},
                                     {{s[0], l.chunks(), heads, l.chunk_len()}, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          const int dout = b.OutputGrad(0);
          if (dout < 0 || !b.NeedsGrad(0)) return;
          const GradSlot s = b.Slot(0);
          b.Emit("ring_attention_backward", {dout, b.input(0), b.output(0), b.output(1)}, {s.value},
                 b.node().attrs, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const Shape& s = in[0].shape;  // this rank's queries against all T keys, as the fused op counts
      return 4.0 * s[0] * s[1] * static_cast<double>(std::get<int64_t>(attrs.at("seq"))) * (s[2] / 3);
    },
    .run = RingForward,
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs&) -> int64_t {
      return 2 * NumElements(in[0].shape) / 3 * 2 * static_cast<int64_t>(sizeof(float));  // 2 × [B, N, 2C]
    },
    .communicates = true,
    // Host memory: PackKv memcpys the k and v columns into the ring buffer.
    .host_loops = true,
});

const OpRegistrar kRingAttentionBackward(OpDef{
    .name = "ring_attention_backward",
    .min_inputs = 4,
    .max_inputs = 4,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const Shape& s = in[1].shape;
      return 10.0 * s[0] * s[1] * static_cast<double>(std::get<int64_t>(attrs.at("seq"))) * (s[2] / 3);
    },
    .run = RingBackward,
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs&) -> int64_t {
      const int64_t kv = NumElements(in[1].shape) / 3 * 2;  // [B, N, 2C]: K|V x 2, dK|dV parts x 2, one arrived
      return (NumElements(in[3].shape) + 5 * kv) * static_cast<int64_t>(sizeof(float));
    },
    .communicates = true,
    // Host memory: PackKv memcpys, and BlockAttentionDelta is a host template.
    .host_loops = true,
});

// The all-to-all between sequence and heads. "Long" side: [B, T, G·c] (every position, head
// block s); "wide" side: [B, N, G·C] (this rank's rows, every head), C = S·c, G groups of
// columns (q|k|v: 3). Buffers: [S peers][B][N][G·c].
struct Exchange {
  parallel::SequenceLayout layout;
  int64_t B = 0, N = 0, G = 1, c = 0;
  int64_t block() const { return B * N * G * c; }  // elements per peer
};

Exchange ExchangeOf(const KernelContext& c, const Shape& wide) {
  Exchange e;
  e.layout = LayoutOf(c);
  e.B = wide[0];
  e.N = wide[1];
  e.G = c.node->IntAttr("groups");
  e.c = wide[2] / e.G / e.layout.parts;
  return e;
}

// Row t of every batch entry of `long_side` for each local row (b, j) of peer `peer`.
template <typename Fn>
void ForPeerRows(const Exchange& e, int64_t peer, Fn fn) {
  const parallel::SequenceLayout l = e.layout.Of(peer);
  for (int64_t b = 0; b < e.B; ++b) {
    int64_t j = 0;
    for (const auto& [start, len] : l.Runs()) {
      for (int64_t t = 0; t < len; ++t, ++j) fn(b, j, start + t);
    }
  }
}

// wide [B, N, G·C] → long [B, T, G·c] (to_long) or back, through one all-to-all.
void Transpose(const KernelContext& c, const Exchange& e, bool to_long) {
  const int64_t S = e.layout.parts, T = e.layout.seq_len, G = e.G, cw = e.c, C = S * cw;
  float* send = static_cast<float*>(c.scratch);
  float* recv = send + S * e.block();
  const float* in = c.in(0);
  float* out = c.out(0);
  const kernels::Accumulate add = c.accumulate[0];
  auto wide_row = [&](int64_t b, int64_t j) { return (b * e.N + j) * G * C; };
  auto long_row = [&](int64_t b, int64_t t) { return (b * T + t) * G * cw; };
  auto buf_row = [&](int64_t peer, int64_t b, int64_t j) { return peer * e.block() + (b * e.N + j) * G * cw; };
  for (int64_t peer = 0; peer < S; ++peer) {
    if (to_long) {  // peer's head block of my rows
      ForPeerRows(e, e.layout.part, [&](int64_t b, int64_t j, int64_t) {
        for (int64_t g = 0; g < G; ++g) {
          std::memcpy(send + buf_row(peer, b, j) + g * cw, in + wide_row(b, j) + g * C + peer * cw, cw * sizeof(float));
        }
      });
    } else {  // my head block of peer's rows
      ForPeerRows(e, peer, [&](int64_t b, int64_t j, int64_t t) {
        std::memcpy(send + buf_row(peer, b, j), in + long_row(b, t), G * cw * sizeof(float));
      });
    }
  }
  if (!c.Wait(c.comm->AllToAll(send, recv, e.block(), DType::kF32))) return;
  for (int64_t peer = 0; peer < S; ++peer) {
    if (to_long) {  // my head block of peer's rows, at their positions
      ForPeerRows(e, peer, [&](int64_t b, int64_t j, int64_t t) {
        kernels::AddInto(recv + buf_row(peer, b, j), out + long_row(b, t), G * cw, add, c.stream);
      });
    } else {  // peer's head block of my rows
      ForPeerRows(e, e.layout.part, [&](int64_t b, int64_t j, int64_t) {
        for (int64_t g = 0; g < G; ++g) {
          kernels::AddInto(recv + buf_row(peer, b, j) + g * cw, out + wide_row(b, j) + g * C + peer * cw, cw, add,
                           c.stream);
        }
      });
    }
  }
}

absl::StatusOr<std::vector<TensorType>> ExchangeShape(const std::string& op, const std::vector<TensorType>& in,
                                                      const Attrs& attrs, bool to_long) {
  RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kF32));
  ASSIGN_OR_RETURN(int64_t parts, GetIntAttr(attrs, op, "parts"));
  ASSIGN_OR_RETURN(int64_t groups, GetIntAttr(attrs, op, "groups"));
  const Shape& s = in[0].shape;
  if (s.size() != 3 || groups < 1 || parts < 1) {
    return ShapeError(op, absl::StrCat("x must be [B, rows, columns], got ", ShapeString(s)));
  }
  if (to_long) {
    ASSIGN_OR_RETURN(parallel::SequenceLayout l, LayoutAttrs(op, attrs, s[1], parts));
    if (s[2] % (groups * parts) != 0) {
      return ShapeError(op, absl::StrCat(groups, " x ", parts, " head blocks must divide the ", s[2], " columns"));
    }
    return std::vector<TensorType>{{{s[0], l.seq_len, s[2] / parts}, DType::kF32}};
  }
  ASSIGN_OR_RETURN(int64_t seq, GetIntAttr(attrs, op, "seq"));
  if (s[1] != seq || s[2] % groups != 0) {
    return ShapeError(op, absl::StrCat("x must be [B, ", seq, ", a multiple of ", groups, "], got ", ShapeString(s)));
  }
  ASSIGN_OR_RETURN(parallel::SequenceLayout l, LayoutAttrs(op, attrs, seq / parts, parts));
  return std::vector<TensorType>{{{s[0], l.local_len(), s[2] * parts}, DType::kF32}};
}

int64_t ExchangeScratch(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
  // send and receive: S blocks of [B, N, G·c] each = the wide side's elements.
  return 2 * std::min(NumElements(in[0].shape), NumElements(out[0].shape)) * static_cast<int64_t>(sizeof(float));
}

void EmitInverse(GradBuilder& b, const std::string& op) {
  const int dy = b.OutputGrad(0);
  if (dy < 0 || !b.NeedsGrad(0)) return;
  const GradSlot s = b.Slot(0);
  b.Emit(op, {dy}, {s.value}, b.node().attrs, {s.accumulate});
}

// The exchange `name` (to the long side or back), whose gradient is the exchange `inverse`.
OpDef ExchangeOp(const std::string& name, const std::string& inverse, bool to_long) {
  return OpDef{
      .name = name,
      .min_inputs = 1,
      .max_inputs = 1,
      .infer = [name, to_long](const std::vector<TensorType>& in,
                               const Attrs& attrs) { return ExchangeShape(name, in, attrs, to_long); },
      .backward = [inverse](GradBuilder& b) { EmitInverse(b, inverse); },
      .flops = Zero,
      .run =
          [to_long](const KernelContext& c) {
            Transpose(c, ExchangeOf(c, to_long ? c.in_value(0).shape : c.out_value(0).shape), to_long);
          },
      .scratch = ExchangeScratch,
      .communicates = true,
      // Host memory: the send buffer is packed by memcpy of rows.
      .host_loops = true,
  };
}

const OpRegistrar kSeqToHeads(ExchangeOp("seq_to_heads", "heads_to_seq", /*to_long=*/true));
const OpRegistrar kHeadsToSeq(ExchangeOp("heads_to_seq", "seq_to_heads", /*to_long=*/false));

}  // namespace
}  // namespace colossal::graph::ops
