// The ops of 2D tensor parallelism besides SUMMA (summa_ops.cc), on a q×q grid where rank
// (i, j) holds token block i and hidden block j of every activation [tokens, C]:
//   layer_norm_2d   layer norm of x [.., C/q] whose statistics run over the whole C: the
//                   row sums are all-reduced over the grid row ("group"; its members
//                   share token block i). Attrs eps, c (the whole C). Backward:
//                   layer_norm_2d_backward, whose two row reductions go over the same
//                   group; the weight and bias gradients cover token block i only (their
//                   sum over the grid column is the trainer's: Layout::partial_grad_axes).
//   embedding_2d    ids [B, T] (the whole micro-batch) and this rank's wte block (vocab
//                   block i, hidden block j) → token block i's embeddings [.., C/q]: each
//                   rank looks up every token block in its vocabulary rows and the grid
//                   column ("group": members share hidden block j, ordered by i)
//                   reduce-scatters them, so member i receives block i's sum. Attrs q,
//                   vocab_start, shape (the output's). Backward: the column all-gathers
//                   the output gradient and scatter-adds the ids of its vocabulary rows.
// The loops run on the host (CPU backend); a device backend needs kernels for them.
#include <cmath>
#include <cstring>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/embedding/embedding.h"

namespace colossal::graph::ops {
namespace {

// Ids relative to a vocabulary block [start, start + rows); those outside it become
// `rows` (the kernels' zero row).
void LocalIds(const int32_t* ids, int32_t* local, int64_t n, int64_t start, int64_t rows) {
  for (int64_t t = 0; t < n; ++t) {
    const int64_t id = ids[t] - start;
    local[t] = static_cast<int32_t>(id >= 0 && id < rows ? id : rows);
  }
}

// The embeddings of n ids at cols wide and their local ids.
int64_t LookupScratch(int64_t n, int64_t cols) {
  return n * cols * static_cast<int64_t>(sizeof(float)) + n * static_cast<int64_t>(sizeof(int32_t));
}

const OpRegistrar kLayerNorm2d(OpDef{
    .name = "layer_norm_2d",
    .min_inputs = 3,
    .max_inputs = 3,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "layer_norm_2d";
      RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
      ASSIGN_OR_RETURN(int64_t whole, GetIntAttr(attrs, op, "c"));
      if (!in.empty() && !in[0].shape.empty() && whole < in[0].shape.back()) {
        return ShapeError(op, "c (the whole hidden size) must be >= the block's");
      }
      return LayerNormShapes(op, in, attrs);
    },
    .backward = [](GradBuilder& b) { EmitLayerNormBackward(b, "layer_norm_2d_backward"); },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 8.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t cols = c.in_value(0).shape.back(), rows = Rows(c.in_value(0).shape);
          const double whole = static_cast<double>(c.node->IntAttr("c"));
          const float eps = static_cast<float>(c.node->FloatAttr("eps"));
          const float *x = c.in(0), *w = c.in(1), *bias = c.in(2);
          float *y = c.out(0), *mean = c.out(1), *rstd = c.out(2);
          // Two passes over the group: the mean, then the variance about it.
          std::vector<float> sums(rows);
          for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t k = 0; k < cols; ++k) s += x[r * cols + k];
            sums[r] = static_cast<float>(s);
          }
          if (!c.Wait(c.comm->AllReduce(sums.data(), rows, DType::kF32))) return;
          for (int64_t r = 0; r < rows; ++r) {
            mean[r] = static_cast<float>(sums[r] / whole);
            double s = 0;
            for (int64_t k = 0; k < cols; ++k) {
              const double d = x[r * cols + k] - mean[r];
              s += d * d;
            }
            sums[r] = static_cast<float>(s);
          }
          if (!c.Wait(c.comm->AllReduce(sums.data(), rows, DType::kF32))) return;
          for (int64_t r = 0; r < rows; ++r) {
            rstd[r] = static_cast<float>(1.0 / std::sqrt(sums[r] / whole + eps));
            for (int64_t k = 0; k < cols; ++k) {
              y[r * cols + k] = (x[r * cols + k] - mean[r]) * rstd[r] * w[k] + bias[k];
            }
          }
        },
    .communicates = true,
    // Host memory: statistics and normalisation are host loops.
    .host_loops = true,
});

// inputs dy, x, w, mean, rstd → dx, dw, db.
const OpRegistrar kLayerNorm2dBackward(OpDef{
    .name = "layer_norm_2d_backward",
    .min_inputs = 5,
    .max_inputs = 5,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 12.0 * NumElements(in[0].shape);
    },
    .run =
        [](const KernelContext& c) {
          const int64_t cols = c.in_value(1).shape.back(), rows = Rows(c.in_value(1).shape);
          const double whole = static_cast<double>(c.node->IntAttr("c"));
          const float *dy = c.in(0), *x = c.in(1), *w = c.in(2), *mean = c.in(3), *rstd = c.in(4);
          float *dx = c.out(0), *dw = c.out(1), *db = c.out(2);
          // Per row: Σ g and Σ g·x̂ over the whole C, g = dy·w, x̂ = (x − mean)·rstd.
          std::vector<float> sums(2 * rows);
          for (int64_t r = 0; r < rows; ++r) {
            double g = 0, gx = 0;
            for (int64_t k = 0; k < cols; ++k) {
              const double gk = static_cast<double>(dy[r * cols + k]) * w[k];
              g += gk;
              gx += gk * (x[r * cols + k] - mean[r]) * rstd[r];
            }
            sums[2 * r] = static_cast<float>(g);
            sums[2 * r + 1] = static_cast<float>(gx);
          }
          if (!c.Wait(c.comm->AllReduce(sums.data(), 2 * rows, DType::kF32))) return;
          if (c.accumulate[1] == Accumulate::kNo) {
            std::fill(dw, dw + cols, 0.0f);
            std::fill(db, db + cols, 0.0f);
          }
          for (int64_t r = 0; r < rows; ++r) {
            const double mg = sums[2 * r] / whole, mgx = sums[2 * r + 1] / whole;
            for (int64_t k = 0; k < cols; ++k) {
              const double xh = (x[r * cols + k] - mean[r]) * rstd[r];
              const double g = static_cast<double>(dy[r * cols + k]) * w[k];
              const float d = static_cast<float>(rstd[r] * (g - mg - xh * mgx));
              dx[r * cols + k] = c.accumulate[0] == Accumulate::kYes ? dx[r * cols + k] + d : d;
              dw[k] += static_cast<float>(dy[r * cols + k] * xh);
              db[k] += dy[r * cols + k];
            }
          }
        },
    .communicates = true,
    // Host memory: the whole backward is host loops.
    .host_loops = true,
});

const OpRegistrar kEmbedding2d(OpDef{
    .name = "embedding_2d",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "embedding_2d";
      RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
      RETURN_IF_ERROR(ExpectDType(op, "ids", in[0], DType::kI32));
      RETURN_IF_ERROR(ExpectDType(op, "table", in[1], DType::kF32));
      ASSIGN_OR_RETURN(int64_t q, GetIntAttr(attrs, op, "q"));
      ASSIGN_OR_RETURN(int64_t start, GetIntAttr(attrs, op, "vocab_start"));
      auto it = attrs.find("shape");
      if (in[1].shape.size() != 2 || q < 1 || start < 0 || it == attrs.end() ||
          !std::holds_alternative<std::vector<int64_t>>(it->second)) {
        return ShapeError(op, "needs a [rows, C/q] table block and attrs q, vocab_start, shape");
      }
      const Shape out = std::get<std::vector<int64_t>>(it->second);
      if (out.empty() || out.back() != in[1].shape[1] ||
          NumElements(out) * q != NumElements(in[0].shape) * in[1].shape[1]) {
        return ShapeError(op, absl::StrCat("output ", ShapeString(out), " is not 1/", q,
                                           " of the ids' embeddings"));
      }
      return std::vector<TensorType>{{out, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          const int dout = b.OutputGrad(0);
          if (dout < 0 || !b.NeedsGrad(1)) return;
          const GradSlot s = b.Slot(1);
          b.Emit("embedding_2d_backward", {b.input(0), dout}, {s.value}, b.node().attrs,
                 {s.accumulate});
        },
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t n = c.in_value(0).numel(), rows = c.in_value(1).shape[0],
                        cols = c.in_value(1).shape[1], start = c.node->IntAttr("vocab_start");
          // Every token block's lookup in this rank's rows, stacked by block.
          float* partial = static_cast<float*>(c.scratch);
          int32_t* local = reinterpret_cast<int32_t*>(partial + n * cols);
          LocalIds(c.in<int32_t>(0), local, n, start, rows);
          kernels::EmbeddingForward(local, c.in(1), partial, n, rows, cols, c.stream);
          c.Wait(c.comm->ReduceScatter(partial, c.out(0), c.out_value(0).numel(), DType::kF32));
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs&) {
      return LookupScratch(NumElements(in[0].shape), in[1].shape[1]);
    },
    .communicates = true,
    // Host memory: maps ids to local rows in a host loop (LocalIds).
    .host_loops = true,
});

const OpRegistrar kEmbedding2dBackward(OpDef{
    .name = "embedding_2d_backward",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = Zero,
    .run =
        [](const KernelContext& c) {
          const int64_t n = c.in_value(0).numel(), rows = c.out_value(0).shape[0],
                        cols = c.out_value(0).shape[1], start = c.node->IntAttr("vocab_start");
          float* all = static_cast<float*>(c.scratch);
          int32_t* local = reinterpret_cast<int32_t*>(all + n * cols);
          if (!c.Wait(c.comm->AllGather(c.in(1), all, c.in_value(1).numel(), DType::kF32))) return;
          LocalIds(c.in<int32_t>(0), local, n, start, rows);
          kernels::EmbeddingBackward(local, all, c.out(0), n, rows, cols, c.accumulate[0], c.stream);
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
      return LookupScratch(NumElements(in[0].shape), out[0].shape[1]);
    },
    .communicates = true,
    // Host memory: maps ids to local rows in a host loop (LocalIds).
    .host_loops = true,
});

}  // namespace
}  // namespace colossal::graph::ops
