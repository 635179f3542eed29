// The graph op gelu (tanh approximation) and its backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/gelu/gelu.h"

namespace colossal::graph::ops {
namespace {

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

}  // namespace
}  // namespace colossal::graph::ops
