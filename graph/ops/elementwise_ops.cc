// Elementwise graph ops: add (the residual stream), accumulate (gradient fan-in) and
// mean (the loss reduction) with its backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/elementwise/mean.h"
#include "runtime/base/check.h"

namespace colossal::graph::ops {
namespace {

const OpRegistrar kAdd(OpDef{
    .name = "add",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      RETURN_IF_ERROR(ExpectDType("add", "a", in[0], DType::kF32));
      if (in[0].shape != in[1].shape || in[1].dtype != in[0].dtype) {
        return ShapeError("add", absl::StrCat("operands differ: ", ShapeString(in[0].shape),
                                              " and ", ShapeString(in[1].shape)));
      }
      return std::vector<TensorType>{in[0]};
    },
    .backward =
        [](GradBuilder& b) {
          int dy = b.OutputGrad(0);
          if (dy < 0) return;
          for (int i = 0; i < 2; ++i) {
            if (b.NeedsGrad(i)) b.PassThrough(i, dy);
          }
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[0].shape));
    },
    .run =
        [](const KernelContext& c) {
          kernels::Add(c.in(0), c.in(1), c.out(0), c.out_value(0).numel(), c.stream);
        },
    .in_place = {{0, 0}, {0, 1}},
});

const OpRegistrar kAccumulate(OpDef{
    .name = "accumulate",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      return std::vector<TensorType>{in[0]};
    },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[0].shape));
    },
    .run =
        [](const KernelContext& c) {
          kernels::AddInto(c.in(0), c.out(0), c.out_value(0).numel(), c.accumulate[0], c.stream);
        },
});

const OpRegistrar kMean(OpDef{
    .name = "mean",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      RETURN_IF_ERROR(ExpectDType("mean", "x", in[0], DType::kF32));
      if (NumElements(in[0].shape) == 0) return ShapeError("mean", "empty input");
      return std::vector<TensorType>{{{1}, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dy = b.OutputGrad(0);
          if (dy < 0 || !b.NeedsGrad(0)) return;
          GradSlot s = b.Slot(0);
          b.Emit("mean_backward", {dy}, {s.value}, {}, {s.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[0].shape));
    },
    .run =
        [](const KernelContext& c) {
          kernels::Mean(c.in(0), c.out(0), c.in_value(0).numel(), c.stream);
        },
});

const OpRegistrar kMeanBackward(OpDef{
    .name = "mean_backward",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>&,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      return ShapeError("mean_backward", "is emitted by autodiff only");
    },
    .flops = [](const std::vector<TensorType>&, const Attrs&) { return 0.0; },
    .run =
        [](const KernelContext& c) {
          // dy is read on the stream's backend by the kernel, not here.
          kernels::MeanBackward(c.in(0), c.out(0), c.out_value(0).numel(), c.accumulate[0], c.stream);
        },
});

}  // namespace
}  // namespace colossal::graph::ops
