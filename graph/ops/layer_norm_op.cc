// The graph op layer_norm: y = (x − mean)·rstd·w + b over the last dimension, and its backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/layer_norm/layer_norm.h"
#include "runtime/base/check.h"

namespace colossal::graph::ops {
namespace {

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

}  // namespace
}  // namespace colossal::graph::ops
