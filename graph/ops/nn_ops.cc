// Neural-network graph ops over the kernel families: layer_norm, gelu, attention,
// embedding, softmax_xent, and their backward ops.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/attention/attention.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gelu/gelu.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/softmax_xent/softmax_xent.h"
#include "runtime/base/check.h"

namespace colossal::graph::ops {
namespace {

// ---------------------------------------------------------------- layer_norm
// inputs x [.., C], weight [C], bias [C]; attr eps; outputs y, mean [rows], rstd [rows].
const OpRegistrar kLayerNorm(OpDef{
    .name = "layer_norm",
    .min_inputs = 3,
    .max_inputs = 3,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "layer_norm";
      for (const auto& t : in) RETURN_IF_ERROR(ExpectDType(op, "inputs", t, DType::kF32));
      RETURN_IF_ERROR(ExpectRankAtLeast(op, "x", in[0], 1));
      const int64_t c = in[0].shape.back();
      if (in[1].shape != Shape{c} || in[2].shape != Shape{c}) {
        return ShapeError(op, absl::StrCat("weight and bias must be [", c, "], got ",
                                           ShapeString(in[1].shape), " and ",
                                           ShapeString(in[2].shape)));
      }
      ASSIGN_OR_RETURN(double eps, GetFloatAttr(attrs, op, "eps"));
      if (!(eps > 0)) return ShapeError(op, "eps must be > 0");
      Shape stats = {Rows(in[0].shape)};
      return std::vector<TensorType>{in[0], {stats, DType::kF32}, {stats, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dy = b.OutputGrad(0);
          if (dy < 0) return;
          const int x = b.input(0), w = b.input(1);
          const int mean = b.output(1), rstd = b.output(2);
          GradSlot dx = b.NeedsGrad(0) ? b.Slot(0) : GradSlot{b.Scratch(x), Accumulate::kNo};
          GradSlot dw = b.NeedsGrad(1) ? b.Slot(1) : GradSlot{b.Scratch(w), Accumulate::kNo};
          GradSlot db = b.NeedsGrad(2) ? b.Slot(2) : GradSlot{b.Scratch(b.input(2)),
                                                              Accumulate::kNo};
          b.Emit("layer_norm_backward", {dy, x, w, mean, rstd}, {dx.value, dw.value, db.value},
                 {}, {dx.accumulate, dw.accumulate, db.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 8.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t cols = c.in_value(0).shape.back();
          kernels::LayerNormForward(c.in(0), c.in(1), c.in(2), c.out(0), c.out(1), c.out(2),
                                    Rows(c.in_value(0).shape), cols,
                                    static_cast<float>(c.node->FloatAttr("eps")), c.stream);
        },
});

const OpRegistrar kLayerNormBackward(OpDef{
    .name = "layer_norm_backward",
    .min_inputs = 5,
    .max_inputs = 5,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 12.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          // dweight and dbias come from the same parameter group: one accumulate mode.
          COL_CHECK(c.accumulate[1] == c.accumulate[2]);
          const int64_t cols = c.in_value(1).shape.back();
          kernels::LayerNormBackward(c.in(0), c.in(1), c.in(2), c.in(3), c.in(4), c.out(0),
                                     c.out(1), c.out(2), Rows(c.in_value(1).shape), cols,
                                     c.accumulate[0], c.accumulate[1], c.stream);
        },
});

// ---------------------------------------------------------------- gelu
const OpRegistrar kGelu(OpDef{
    .name = "gelu",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      RETURN_IF_ERROR(ExpectDType("gelu", "x", in[0], DType::kF32));
      return std::vector<TensorType>{in[0]};
    },
    .backward =
        [](GradBuilder& b) {
          int dy = b.OutputGrad(0);
          if (dy < 0 || !b.NeedsGrad(0)) return;
          GradSlot s = b.Slot(0);
          b.Emit("gelu_backward", {b.input(0), dy}, {s.value}, {}, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 8.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          kernels::GeluForward(c.in(0), c.out(0), c.out_value(0).numel(), c.stream);
        },
});

const OpRegistrar kGeluBackward(OpDef{
    .name = "gelu_backward",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 12.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          kernels::GeluBackward(c.in(0), c.in(1), c.out(0), c.out_value(0).numel(),
                                c.accumulate[0], c.stream);
        },
    .in_place = {{0, 1}},
});

// ---------------------------------------------------------------- attention
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

// ---------------------------------------------------------------- embedding
// ids (i32, any shape), table [V, C] → out [ids..., C].
const OpRegistrar kEmbedding(OpDef{
    .name = "embedding",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "embedding";
      RETURN_IF_ERROR(ExpectDType(op, "ids", in[0], DType::kI32));
      RETURN_IF_ERROR(ExpectDType(op, "table", in[1], DType::kF32));
      if (in[1].shape.size() != 2) {
        return ShapeError(op, absl::StrCat("table must be [V, C], got ", ShapeString(in[1].shape)));
      }
      Shape out = in[0].shape;
      out.push_back(in[1].shape[1]);
      return std::vector<TensorType>{{out, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dout = b.OutputGrad(0);
          if (dout < 0 || !b.NeedsGrad(1)) return;
          GradSlot s = b.Slot(1);
          b.Emit("embedding_backward", {b.input(0), dout}, {s.value}, {}, {s.accumulate});
        },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          kernels::EmbeddingForward(c.in<int32_t>(0), c.in(1), c.out(0), c.in_value(0).numel(),
                                    c.in_value(1).shape[0], c.in_value(1).shape[1], c.stream);
        },
});

const OpRegistrar kEmbeddingBackward(OpDef{
    .name = "embedding_backward",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[1].shape));
    },
    .run =
        [](const KernelContext& c) {
          const Shape& table = c.out_value(0).shape;
          kernels::EmbeddingBackward(c.in<int32_t>(0), c.in(1), c.out(0), c.in_value(0).numel(),
                                     table[0], table[1], c.accumulate[0], c.stream);
        },
});

// ---------------------------------------------------------------- softmax_xent
// logits [.., V], targets i32 [..] → loss [rows], lse [rows].
const OpRegistrar kSoftmaxXent(OpDef{
    .name = "softmax_xent",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "softmax_xent";
      RETURN_IF_ERROR(ExpectDType(op, "logits", in[0], DType::kF32));
      RETURN_IF_ERROR(ExpectDType(op, "targets", in[1], DType::kI32));
      RETURN_IF_ERROR(ExpectRankAtLeast(op, "logits", in[0], 1));
      if (Leading(in[0].shape) != in[1].shape) {
        return ShapeError(op, absl::StrCat("targets ", ShapeString(in[1].shape),
                                           " must match logits ", ShapeString(in[0].shape),
                                           " without its last dimension"));
      }
      Shape rows = {Rows(in[0].shape)};
      return std::vector<TensorType>{{rows, DType::kF32}, {rows, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dloss = b.OutputGrad(0);
          if (dloss < 0 || !b.NeedsGrad(0)) return;
          GradSlot s = b.Slot(0);
          b.Emit("softmax_xent_backward", {b.input(0), b.output(1), b.input(1), dloss},
                 {s.value}, {}, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 3.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t v = c.in_value(0).shape.back();
          kernels::SoftmaxXentForward(c.in(0), v, c.in<int32_t>(1), c.out(0), c.out(1),
                                      Rows(c.in_value(0).shape), v, c.stream);
        },
});

const OpRegistrar kSoftmaxXentBackward(OpDef{
    .name = "softmax_xent_backward",
    .min_inputs = 4,
    .max_inputs = 4,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 3.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t v = c.in_value(0).shape.back();
          kernels::SoftmaxXentBackward(c.in(0), v, c.in(1), c.in<int32_t>(2), c.in(3), c.out(0),
                                       Rows(c.in_value(0).shape), v, c.accumulate[0], c.stream);
        },
    .in_place = {{0, 0}},
});

}  // namespace
}  // namespace colossal::graph::ops
