// The graph op attention: causal multi-head self-attention over packed q|k|v, and its backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/attention/attention.h"

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
      const std::string op = "attention";
      RETURN_IF_ERROR(ExpectDType(op, "qkv", in[0], DType::kF32));
      ASSIGN_OR_RETURN(int64_t heads, GetIntAttr(attrs, op, "n_head"));
      const Shape& s = in[0].shape;
      if (s.size() != 3 || s[2] % 3 != 0) {
        return ShapeError(op, absl::StrCat("qkv must be [B, T, 3C], got ", ShapeString(s)));
      }
      const int64_t c = s[2] / 3;
      if (heads < 1 || c % heads != 0) {
        return ShapeError(op, absl::StrCat("n_head ", heads, " must divide C = ", c));
      }
      return std::vector<TensorType>{{{s[0], s[1], c}, DType::kF32},
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

}  // namespace
}  // namespace colossal::graph::ops
