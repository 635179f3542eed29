// The graph op attention: causal multi-head self-attention over packed q|k|v, and its backward.
#include <cstdint>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/kv_cache.h"
#include "kernels/elementwise/elementwise.h"

namespace colossal::graph::ops {
namespace {

kernels::AttentionShape AttentionDims(const Shape& qkv, int64_t heads) {
  kernels::AttentionShape s;
  s.batch = qkv[0];
  s.seq = qkv[1];
  s.heads = heads;
  s.head_dim = qkv[2] / 3 / heads;
  return s;
}

// qkv [B, T, 3C] with attr n_head → out [B, T, C], probs [B, H, T, T].
const OpRegistrar kAttention(OpDef{
    .name = "attention",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      ASSIGN_OR_RETURN(int64_t heads, CheckQkv("attention", in[0], attrs));
      const Shape& s = in[0].shape;
      return std::vector<TensorType>{{{s[0], s[1], s[2] / 3}, DType::kF32},
                                     {{s[0], heads, s[1], s[1]}, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dout = b.OutputGrad(0);
          if (dout < 0 || !b.NeedsGrad(0)) return;
          GradSlot s = b.Slot(0);
          b.Emit("attention_backward", {dout, b.input(0), b.output(1)}, {s.value},
                 b.node().attrs, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      const Shape& s = in[0].shape;  // 2·T·T·C for QKᵀ and as much for PV, per sequence
      return 4.0 * s[0] * s[1] * s[1] * (s[2] / 3);
    },
    .run =
        [](const KernelContext& c) {
          kernels::AttentionForward(c.in(0), c.out(0), c.out(1),
                                    AttentionDims(c.in_value(0).shape,
                                                  c.node->IntAttr("n_head")),
                                    c.stream);
        },
});

const OpRegistrar kAttentionBackward(OpDef{
    .name = "attention_backward",
    .min_inputs = 3,
    .max_inputs = 3,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      const Shape& s = in[1].shape;
      return 8.0 * s[0] * s[1] * s[1] * (s[2] / 3);
    },
    .run =
        [](const KernelContext& c) {
          kernels::AttentionBackward(c.in(0), c.in(1), c.in(2), c.out(0),
                                     AttentionDims(c.in_value(1).shape,
                                                   c.node->IntAttr("n_head")),
                                     c.accumulate[0], c.stream);
        },
});

// The blockwise form (kernels/attention BlockAttention*): qkv [B, T, 3C] with attr n_head
// → out [B, T, C], lse [B, H, T]; one block over the whole sequence, so nothing T×T is
// kept. Its backward recomputes the scores tile by tile from out and lse.
kernels::BlockAttentionShape WholeBlock(const Shape& qkv, int64_t heads) {
  const int64_t C = qkv[2] / 3;
  return {qkv[0], heads, C / heads, qkv[1], qkv[1], 0, 0, 3 * C, 3 * C, C};
}

const OpRegistrar kBlockAttention(OpDef{
    .name = "block_attention",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      ASSIGN_OR_RETURN(int64_t heads, CheckQkv("block_attention", in[0], attrs));
      const Shape& s = in[0].shape;
      return std::vector<TensorType>{{{s[0], s[1], s[2] / 3}, DType::kF32}, {{s[0], heads, s[1]}, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dout = b.OutputGrad(0);
          if (dout < 0 || !b.NeedsGrad(0)) return;
          GradSlot s = b.Slot(0);
          b.Emit("block_attention_backward", {dout, b.input(0), b.output(0), b.output(1)}, {s.value},
                 b.node().attrs, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      const Shape& s = in[0].shape;  // as the fused op: the model's FLOPs, not the recompute
      return 4.0 * s[0] * s[1] * s[1] * (s[2] / 3);
    },
    .run =
        [](const KernelContext& c) {
          const float* qkv = c.in(0);
          const kernels::BlockAttentionShape s = WholeBlock(c.in_value(0).shape, c.node->IntAttr("n_head"));
          kernels::BlockAttentionForward(qkv, qkv + s.channels(), qkv + 2 * s.channels(), c.out(0), c.out(1),
                                         /*first=*/true, s, c.stream);
        },
});

// dout, qkv, out, lse → dqkv; its scratch holds delta = rowsum(dout ⊙ out) [B, H, T].
const OpRegistrar kBlockAttentionBackward(OpDef{
    .name = "block_attention_backward",
    .min_inputs = 4,
    .max_inputs = 4,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      const Shape& s = in[1].shape;  // the fused backward's, plus the recomputed QKᵀ
      return 10.0 * s[0] * s[1] * s[1] * (s[2] / 3);
    },
    .run =
        [](const KernelContext& c) {
          const float* qkv = c.in(1);
          const kernels::BlockAttentionShape s = WholeBlock(c.in_value(1).shape, c.node->IntAttr("n_head"));
          const int64_t C = s.channels();
          float* dqkv = c.out(0);
          float* delta = static_cast<float*>(c.scratch);
          kernels::BlockAttentionDelta(c.in(0), c.in(2), delta, s, c.stream);
          // The kernel adds into dq, dk and dv: start from zero unless accumulating.
          if (c.accumulate[0] == kernels::Accumulate::kNo) kernels::Fill(dqkv, s.batch * s.q_len * 3 * C, 0.0f, c.stream);
          kernels::BlockAttentionBackward(c.in(0), qkv, qkv + C, qkv + 2 * C, c.in(3), delta, dqkv, dqkv + C,
                                          dqkv + 2 * C, s, c.stream);
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs& attrs) -> int64_t {
      const Shape& qkv = in[1].shape;
      return qkv[0] * std::get<int64_t>(attrs.at("n_head")) * qkv[1] * static_cast<int64_t>(sizeof(float));
    },
});

// One decoding step with a KV cache (a decode graph, models/gpt.h): qkv [B, 1, 3C] of
// each sequence's new token, positions [B, 1] i32 (the same position p for every
// sequence), k_cache and v_cache kState [B, T, C] → out [B, 1, C]. Writes the token's k
// and v at row p of the caches (KvCacheAppend), then attends to rows 0..p
// (AttentionDecode); both kernels read p on the stream's backend. Forward only: there is
// no gradient of a cached step.
const OpRegistrar kAttentionDecode(OpDef{
    .name = "attention_decode",
    .min_inputs = 4,
    .max_inputs = 4,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "attention_decode";
      RETURN_IF_ERROR(ExpectDType(op, "qkv", in[0], DType::kF32));
      RETURN_IF_ERROR(ExpectDType(op, "positions", in[1], DType::kI32));
      ASSIGN_OR_RETURN(int64_t heads, GetIntAttr(attrs, op, "n_head"));
      const Shape& s = in[0].shape;
      if (s.size() != 3 || s[1] != 1 || s[2] % 3 != 0) {
        return ShapeError(op, absl::StrCat("qkv must be [B, 1, 3C], got ", ShapeString(s)));
      }
      const int64_t c = s[2] / 3;
      if (heads < 1 || c % heads != 0) {
        return ShapeError(op, absl::StrCat("n_head ", heads, " must divide C = ", c));
      }
      if (in[1].shape != Shape{s[0], 1}) {
        return ShapeError(op, absl::StrCat("positions must be [B, 1], got ", ShapeString(in[1].shape)));
      }
      for (int i : {2, 3}) {
        const Shape& cache = in[i].shape;
        if (cache.size() != 3 || cache[0] != s[0] || cache[2] != c) {
          return ShapeError(op, absl::StrCat(i == 2 ? "k_cache" : "v_cache", " must be [B, T, C], got ",
                                             ShapeString(cache)));
        }
      }
      if (in[3].shape != in[2].shape) return ShapeError(op, "k_cache and v_cache differ in shape");
      return std::vector<TensorType>{{{s[0], 1, c}, DType::kF32}};
    },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      const Shape& cache = in[2].shape;  // at most T cached rows: 2·T·C for q·K and as much for P·V
      return 4.0 * cache[0] * cache[1] * cache[2];
    },
    .run =
        [](const KernelContext& c) {
          const Shape& cache = c.in_value(2).shape;
          const int64_t B = cache[0], T = cache[1], C = cache[2];
          const int64_t heads = c.node->IntAttr("n_head");
          // The position stays on the stream's backend: both kernels read positions[0]
          // there, and check it lies in the cache (kernels/attention/kv_cache.h).
          const int32_t* position = c.in<int32_t>(1);
          const float* qkv = c.in(0);
          // q of sequence b is row b of qkv with stride 3C; the decode kernel takes [B, C],
          // so for B > 1 the append packs the queries into the scratch. With B = 1 the
          // query is qkv's first C values already.
          float* q = B > 1 ? static_cast<float*>(c.scratch) : nullptr;
          kernels::KvCacheAppend(qkv, position, c.state(2), c.state(3), q, B, T, C, c.stream);
          kernels::AttentionDecode(q != nullptr ? q : qkv, c.state(2), c.state(3), c.out(0), B, position, T, heads,
                                   C / heads, c.stream);
        },
    // B > 1: the queries packed [B, C] for the kernel (rows of qkv are 3C apart).
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs&) -> int64_t {
      const Shape& cache = in[2].shape;
      return cache[0] > 1 ? cache[0] * cache[2] * static_cast<int64_t>(sizeof(float)) : 0;
    },
});

}  // namespace
}  // namespace colossal::graph::ops
