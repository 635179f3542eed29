// Communication as graph ops: collectives over the process group named by the node's
// "group" attribute, with the backward rules of Megatron's conjugate pair —
//   copy_to_group      forward identity,              backward all-reduce (Megatron's f)
//   reduce_from_group  forward all-reduce (sum),      backward identity   (Megatron's g)
//   all_reduce         an all-reduce emitted by autodiff (f's backward)
//   all_gather         forward: the group's blocks concatenated by rank (the flattened
//                      input is one block), backward reduce_scatter (Megatron's
//                      sequence-parallel g)
//   reduce_scatter     forward: this rank's block of the sum, backward all_gather (ḡ)
// all_gather and reduce_scatter take attrs `parts` (the group's size) and `shape` (the
// output's shape; its elements are parts × / ÷ the input's).
// Each waits for its collective before returning, or, in an asynchronous schedule
// (all_reduce, all_gather and reduce_scatter: OpDef::start), posts it and completes at
// the node's wait entry (schedule.h: OverlapCommunication). A failed collective sets
// the run's status and the executor stops.
#include <cstring>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"

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
  CollectInto(c, [&](float* dst) {
    if (dst != c.in(0)) std::memcpy(dst, c.in(0), n * sizeof(float));
    return c.Wait(c.comm->AllReduce(dst, n, DType::kF32));
  });
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
    // Host memory: memcpy when the output does not alias the input.
    .host_loops = true,
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
    // Host memory: memcpy into the reduction buffer; accumulating stages through a host vector (CollectInto).
    .host_loops = true,
});

// Posts the all-reduce of out = in (overwrite only).
std::unique_ptr<parallel::Work> StartAllReduce(const KernelContext& c) {
  const int64_t n = c.out_value(0).numel();
  if (c.out(0) != c.in(0)) std::memcpy(c.out(0), c.in(0), n * sizeof(float));
  return c.comm->AllReduce(c.out(0), n, DType::kF32);
}

const OpRegistrar kAllReduce(OpDef{
    .name = "all_reduce",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = EmittedOnly,
    .flops = Zero,
    .run = AllReduceInto,
    .start = StartAllReduce,
    .in_place = {{0, 0}},
    .communicates = true,
    // Host memory: memcpy into the reduction buffer; accumulating stages through a host vector (CollectInto).
    .host_loops = true,
});

absl::StatusOr<std::vector<TensorType>> GatherScatterShape(const std::string& op,
                                                            const std::vector<TensorType>& in,
                                                            const Attrs& attrs, bool gather) {
  RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
  RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kF32));
  ASSIGN_OR_RETURN(int64_t parts, GetIntAttr(attrs, op, "parts"));
  auto it = attrs.find("shape");
  if (it == attrs.end() || !std::holds_alternative<std::vector<int64_t>>(it->second)) {
    return ShapeError(op, "needs an integer-list attribute 'shape' (the output's shape)");
  }
  const Shape out = std::get<std::vector<int64_t>>(it->second);
  const int64_t n = NumElements(in[0].shape), m = NumElements(out);
  if (parts < 1 || (gather ? m != parts * n : n != parts * m)) {
    return ShapeError(op, absl::StrCat("output ", ShapeString(out), " must have ",
                                       gather ? "parts x" : "1/parts of", " the elements of ",
                                       ShapeString(in[0].shape), " (parts ", parts, ")"));
  }
  return std::vector<TensorType>{{out, DType::kF32}};
}

// The conjugate of a gather/scatter node, writing input 0's gradient.
void EmitConjugate(GradBuilder& b, const std::string& op) {
  const int dy = b.OutputGrad(0);
  if (dy < 0 || !b.NeedsGrad(0)) return;
  const GradSlot s = b.Slot(0);
  Attrs attrs = b.node().attrs;
  attrs["shape"] = b.input_value(0).shape;
  b.Emit(op, {dy}, {s.value}, attrs, {s.accumulate});
}

const OpRegistrar kAllGather(OpDef{
    .name = "all_gather",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return GatherScatterShape("all_gather", in, attrs, /*gather=*/true);
    },
    .backward = [](GradBuilder& b) { EmitConjugate(b, "reduce_scatter"); },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t n = c.in_value(0).numel();
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm->AllGather(c.in(0), dst, n, DType::kF32));
          });
        },
    .start = [](const KernelContext& c) {
      return c.comm->AllGather(c.in(0), c.out(0), c.in_value(0).numel(), DType::kF32);
    },
    .communicates = true,
    // Host memory: accumulating stages the gather in a host vector (CollectInto).
    .host_loops = true,
});

const OpRegistrar kReduceScatter(OpDef{
    .name = "reduce_scatter",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return GatherScatterShape("reduce_scatter", in, attrs, /*gather=*/false);
    },
    .backward = [](GradBuilder& b) { EmitConjugate(b, "all_gather"); },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t m = c.out_value(0).numel();
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm->ReduceScatter(c.in(0), dst, m, DType::kF32));
          });
        },
    .start = [](const KernelContext& c) {
      return c.comm->ReduceScatter(c.in(0), c.out(0), c.out_value(0).numel(), DType::kF32);
    },
    .communicates = true,
    // Host memory: accumulating stages the scatter in a host vector (CollectInto).
    .host_loops = true,
});

// shard_rows: int32 x → its block `part` of `parts` (flattened, contiguous), as `shape`.
// No gradient: it takes this rank's token positions under sequence parallelism.
const OpRegistrar kShardRows(OpDef{
    .name = "shard_rows",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "shard_rows";
      RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kI32));
      ASSIGN_OR_RETURN(int64_t parts, GetIntAttr(attrs, op, "parts"));
      ASSIGN_OR_RETURN(int64_t part, GetIntAttr(attrs, op, "part"));
      auto it = attrs.find("shape");
      if (it == attrs.end() || !std::holds_alternative<std::vector<int64_t>>(it->second)) {
        return ShapeError(op, "needs an integer-list attribute 'shape' (the output's shape)");
      }
      const Shape out = std::get<std::vector<int64_t>>(it->second);
      if (parts < 1 || part < 0 || part >= parts ||
          NumElements(out) * parts != NumElements(in[0].shape)) {
        return ShapeError(op, absl::StrCat("part ", part, " of ", parts, " of ",
                                           ShapeString(in[0].shape), " cannot be ",
                                           ShapeString(out)));
      }
      return std::vector<TensorType>{{out, DType::kI32}};
    },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t m = c.out_value(0).numel();
          std::memcpy(c.out<int32_t>(0), c.in<int32_t>(0) + c.node->IntAttr("part") * m,
                      m * sizeof(int32_t));
        },
    // Host memory: memcpy of its block of ids.
    .host_loops = true,
});

}  // namespace
}  // namespace colossal::graph::ops
