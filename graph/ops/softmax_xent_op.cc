// The graph op softmax_xent: fused softmax cross-entropy over the last dimension, and its backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/softmax_xent/softmax_xent.h"

namespace colossal::graph::ops {
namespace {

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
