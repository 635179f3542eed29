// The graph op embedding: row lookup into a table (rows past a vocab-parallel block give 0), and
// its scatter-add backward.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/embedding/embedding.h"

namespace colossal::graph::ops {
namespace {

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

}  // namespace
}  // namespace colossal::graph::ops
