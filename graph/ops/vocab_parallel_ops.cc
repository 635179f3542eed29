// The vocabulary split over a tensor-parallel group (Megatron's vocab-parallel embedding
// and cross-entropy; the tied wte is split by rows, the LM head's logits by columns).
//   vocab_shard_ids      ids → this rank's row of wte for ids in [start, start + size),
//                        `size` (no row here) for the others; negative ids stay (ignored).
//   vocab_parallel_xent  logits [.., V/P] and local targets (vocab_shard_ids) → the
//                        loss and the log-sum-exp over the whole vocabulary, identical on
//                        every rank of the group: each rank's (lse_r, x[t] where the
//                        target is its own) pair is all-gathered, lse = logsumexp_r lse_r
//                        and loss = lse − x[t]. Backward: softmax_xent_backward of the
//                        local block from the global lse (no communication).
// The embedding itself is the `embedding` op over local ids (rows past the block are 0)
// followed by reduce_from_group.
#include <cmath>
#include <limits>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/softmax_xent/softmax_xent.h"

namespace colossal::graph::ops {
namespace {

const OpRegistrar kVocabShardIds(OpDef{
    .name = "vocab_shard_ids",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "vocab_shard_ids";
      RETURN_IF_ERROR(ExpectDType(op, "ids", in[0], DType::kI32));
      ASSIGN_OR_RETURN(int64_t start, GetIntAttr(attrs, op, "start"));
      ASSIGN_OR_RETURN(int64_t size, GetIntAttr(attrs, op, "size"));
      if (start < 0 || size < 1) {
        return ShapeError(op, absl::StrCat("start ", start, " and size ", size, " are out of range"));
      }
      return std::vector<TensorType>{in[0]};
    },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t start = c.node->IntAttr("start"), size = c.node->IntAttr("size");
          const int32_t* ids = c.in<int32_t>(0);
          int32_t* out = c.out<int32_t>(0);
          const int64_t n = c.in_value(0).numel();
          for (int64_t i = 0; i < n; ++i) {
            const int64_t local = static_cast<int64_t>(ids[i]) - start;
            out[i] = ids[i] < 0 ? ids[i]
                                : static_cast<int32_t>(local >= 0 && local < size ? local : size);
          }
        },
    // Host memory: maps ids to local rows in a host loop.
    .host_loops = true,
});

const OpRegistrar kVocabParallelXent(OpDef{
    .name = "vocab_parallel_xent",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      RETURN_IF_ERROR(GetGroupAttr(attrs, "vocab_parallel_xent").status());
      return XentShapes("vocab_parallel_xent", in);
    },
    .backward = EmitXentBackward,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 3.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t v = c.in_value(0).shape.back();
          const int64_t rows = Rows(c.in_value(0).shape);
          const float* x = c.in(0);
          const int32_t* t = c.in<int32_t>(1);
          float* loss = c.out(0);
          float* lse = c.out(1);
          kernels::SoftmaxXentForward(x, v, t, loss, lse, rows, v, c.stream);
          // (lse_r, target logit or 0) per row, gathered by rank.
          const int ranks = c.comm->size();
          std::vector<float> mine(2 * rows), all(2 * rows * ranks);
          for (int64_t i = 0; i < rows; ++i) {
            mine[2 * i] = lse[i];
            mine[2 * i + 1] = t[i] >= 0 && t[i] < v ? x[i * v + t[i]] : 0.0f;
          }
          if (!c.Wait(c.comm->AllGather(mine.data(), all.data(), 2 * rows, DType::kF32))) return;
          for (int64_t i = 0; i < rows; ++i) {
            double m = -std::numeric_limits<double>::infinity(), target = 0;
            for (int r = 0; r < ranks; ++r) {
              m = std::max(m, static_cast<double>(all[(r * rows + i) * 2]));
              target += all[(r * rows + i) * 2 + 1];
            }
            double sum = 0;
            for (int r = 0; r < ranks; ++r) sum += std::exp(all[(r * rows + i) * 2] - m);
            const double row_lse = m + std::log(sum);
            lse[i] = static_cast<float>(row_lse);
            loss[i] = t[i] < 0 ? 0.0f : static_cast<float>(row_lse - target);
          }
        },
    .communicates = true,
    // Host memory: packs and combines the gathered log-sum-exps in host loops.
    .host_loops = true,
});

}  // namespace
}  // namespace colossal::graph::ops
