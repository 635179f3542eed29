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
    .infer = [](const std::vector<TensorType>& in, const Attrs&) {
      return XentShapes("softmax_xent", in);
    },
    .backward = EmitXentBackward,
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
