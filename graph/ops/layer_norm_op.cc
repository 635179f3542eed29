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
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return LayerNormShapes("layer_norm", in, attrs);
    },
    .backward = [](GradBuilder& b) { EmitLayerNormBackward(b, "layer_norm_backward"); },
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
