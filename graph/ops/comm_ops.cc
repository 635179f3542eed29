// Communication as graph ops: collectives over the process group named by the node's
// "group" attribute, with the backward rules of Megatron's conjugate pair —
//   copy_to_group      forward identity,              backward all-reduce (Megatron's f)
//   reduce_from_group  forward all-reduce (sum),      backward identity   (Megatron's g)
//   all_reduce         an all-reduce emitted by autodiff (f's backward)
// Each waits for its collective before returning (the schedule orders them; overlap
// with compute comes with asynchronous comm entries). A failed collective sets the
// run's status and the executor stops.
#include <cstring>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/elementwise/elementwise.h"

namespace colossal::graph::ops {
namespace {

absl::StatusOr<std::vector<TensorType>> SameAsInput(const std::string& op,
                                                    const std::vector<TensorType>& in,
                                                    const Attrs& attrs) {
  RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
  RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kF32));
  return std::vector<TensorType>{in[0]};
}

void CopyIfApart(const KernelContext& c) {
  if (c.out(0) != c.in(0)) {
    std::memcpy(c.out(0), c.in(0), c.out_value(0).numel() * sizeof(float));
  }
}

// out (=|+=) Σ over the group of in.
void AllReduceInto(const KernelContext& c) {
  const int64_t n = c.out_value(0).numel();
  if (c.accumulate[0] == Accumulate::kNo) {
    CopyIfApart(c);
    c.Wait(c.comm->AllReduce(c.out(0), n, DType::kF32));
    return;
  }
  std::vector<float> sum(c.in(0), c.in(0) + n);
  if (c.Wait(c.comm->AllReduce(sum.data(), n, DType::kF32))) {
    kernels::AddInto(sum.data(), c.out(0), n, Accumulate::kYes, c.stream);
  }
}

const OpRegistrar kCopyToGroup(OpDef{
    .name = "copy_to_group",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return SameAsInput("copy_to_group", in, attrs);
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy < 0 || !b.NeedsGrad(0)) return;
          const GradSlot s = b.Slot(0);
          b.Emit("all_reduce", {dy}, {s.value}, {{"group", b.node().attrs.at("group")}},
                 {s.accumulate});
        },
    .flops = Zero,
    .run = [](const KernelContext& c) { CopyIfApart(c); },
    .in_place = {{0, 0}},
    .communicates = true,
});

const OpRegistrar kReduceFromGroup(OpDef{
    .name = "reduce_from_group",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return SameAsInput("reduce_from_group", in, attrs);
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy >= 0 && b.NeedsGrad(0)) b.PassThrough(0, dy);
        },
    .flops = Zero,
    .run = AllReduceInto,
    .in_place = {{0, 0}},
    .communicates = true,
});

const OpRegistrar kAllReduce(OpDef{
    .name = "all_reduce",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = EmittedOnly,
    .flops = Zero,
    .run = AllReduceInto,
    .in_place = {{0, 0}},
    .communicates = true,
});

}  // namespace
}  // namespace colossal::graph::ops
