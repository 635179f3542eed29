// SUMMA: the matrix product of 2D tensor parallelism (Xu et al., "An Efficient 2D Method
// for Training Super-Large Deep Learning Models"; van de Geijn and Watts' SUMMA) on a
// q×q grid. Rank (i, j) holds block (i, j) of the activation X [M, K] (M split over the
// grid's rows, K over its columns), of the weight W [K, N] and of Y = X·W [M, N]:
//   summa_matmul     (AB)   Y_ij = Σ_k A_ik · B_kj: at step k, A_ik is broadcast along
//                           row i (from column k) and B_kj along column j (from row k)
//   summa_matmul_nt  (ABᵀ)  Y_ik = Σ_j A_ij · B_kjᵀ (B [K, N] in blocks B_kj): the
//                           column's B blocks all-gathered, the q products A_ij · B_kjᵀ
//                           reduce-scattered along the row (member k gets Y_ik)
//   summa_matmul_tn  (AᵀB)  Y_kj = Σ_i A_ikᵀ · B_ij: the row's A blocks all-gathered, the
//                           q products reduce-scattered along the column
// Backward: AB → dA = nt(dY, B), dB = tn(A, dY); ABᵀ → dA = AB(dY, B), dB = tn(dY, A)
// (ABᵀ is also the tied LM head: logits = X · wteᵀ with wte in the same blocks as the
// embedding's). tn appears only in backward passes.
// Attributes: "group" is the row group (its members ordered by column index j), "group_b"
// the column group (ordered by row index i), "q" the grid's side. The x input may have
// any leading dimensions (they are its rows).
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/matmul/matmul.h"

namespace colossal::graph::ops {
namespace {

using kernels::Trans;

int64_t Floats(int64_t n) { return n * static_cast<int64_t>(sizeof(float)); }

absl::Status CheckGroups(const std::string& op, const Attrs& attrs) {
  RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
  auto it = attrs.find("group_b");
  if (it == attrs.end() || !std::holds_alternative<std::string>(it->second)) {
    return ShapeError(op, "needs a string attribute 'group_b' (the column group)");
  }
  ASSIGN_OR_RETURN(int64_t q, GetIntAttr(attrs, op, "q"));
  if (q < 1) return ShapeError(op, absl::StrCat("q must be >= 1, got ", q));
  return absl::OkStatus();
}

// a block [.., K] times b block [K, N] (or, transposed, bᵀ for b [N, K]) → [.., N].
absl::StatusOr<std::vector<TensorType>> SummaShapes(const std::string& op,
                                                    const std::vector<TensorType>& in,
                                                    const Attrs& attrs, bool transposed) {
  RETURN_IF_ERROR(CheckGroups(op, attrs));
  RETURN_IF_ERROR(ExpectDType(op, "a", in[0], DType::kF32));
  RETURN_IF_ERROR(ExpectDType(op, "b", in[1], DType::kF32));
  RETURN_IF_ERROR(ExpectRankAtLeast(op, "a", in[0], 1));
  const int contracted = transposed ? 1 : 0;
  if (in[1].shape.size() != 2 || in[0].shape.back() != in[1].shape[contracted]) {
    return ShapeError(op, absl::StrCat("a block ", ShapeString(in[0].shape), " and b block ",
                                       ShapeString(in[1].shape), transposed ? " (transposed)" : "",
                                       " do not chain"));
  }
  Shape out = Leading(in[0].shape);
  out.push_back(in[1].shape[1 - contracted]);
  return std::vector<TensorType>{{out, DType::kF32}};
}

const OpRegistrar kSummaMatmul(OpDef{
    .name = "summa_matmul",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return SummaShapes("summa_matmul", in, attrs, /*transposed=*/false);
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy < 0) return;
          if (b.NeedsGrad(1)) {
            GradSlot s = b.Slot(1);
            b.Emit("summa_matmul_tn", {b.input(0), dy}, {s.value}, b.node().attrs, {s.accumulate});
          }
          if (b.NeedsGrad(0)) {
            GradSlot s = b.Slot(0);
            b.Emit("summa_matmul_nt", {dy, b.input(1)}, {s.value}, b.node().attrs, {s.accumulate});
          }
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const double q = static_cast<double>(std::get<int64_t>(attrs.at("q")));
      return 2.0 * q * Rows(in[0].shape) * in[0].shape.back() * in[1].shape[1];
    },
    .run =
        [](const KernelContext& c) {
          const int64_t q = c.node->IntAttr("q");
          const int64_t m = Rows(c.in_value(0).shape), k = c.in_value(1).shape[0],
                        n = c.in_value(1).shape[1];
          float* a = static_cast<float*>(c.scratch);
          float* w = a + m * k;
          for (int64_t step = 0; step < q; ++step) {
            // The row's column `step` sends its X block; the column's row `step` its W block.
            if (c.comm->rank() == step) std::copy(c.in(0), c.in(0) + m * k, a);
            if (c.comm_b->rank() == step) std::copy(c.in(1), c.in(1) + k * n, w);
            if (!c.Wait(c.comm->Broadcast(a, m * k, DType::kF32, static_cast<int>(step))) ||
                !c.Wait(c.comm_b->Broadcast(w, k * n, DType::kF32, static_cast<int>(step)))) {
              return;
            }
            const Accumulate acc = step > 0 ? Accumulate::kYes : c.accumulate[0];
            Product(a, Trans::kNo, w, Trans::kNo, c.out(0), m, n, k, acc, c.stream);
          }
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs&) {
      return Floats(NumElements(in[0].shape) + NumElements(in[1].shape));
    },
    .communicates = true,
    // Host memory: std::copy of its blocks into the broadcast buffers.
    .host_loops = true,
});

// inputs a [.., Nb], b [Kb, Nb] → a · bᵀ [.., Kb].
const OpRegistrar kSummaMatmulNt(OpDef{
    .name = "summa_matmul_nt",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      return SummaShapes("summa_matmul_nt", in, attrs, /*transposed=*/true);
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy < 0) return;
          if (b.NeedsGrad(1)) {
            GradSlot s = b.Slot(1);
            b.Emit("summa_matmul_tn", {dy, b.input(0)}, {s.value}, b.node().attrs, {s.accumulate});
          }
          if (b.NeedsGrad(0)) {
            GradSlot s = b.Slot(0);
            b.Emit("summa_matmul", {dy, b.input(1)}, {s.value}, b.node().attrs, {s.accumulate});
          }
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const double q = static_cast<double>(std::get<int64_t>(attrs.at("q")));
      return 2.0 * q * Rows(in[0].shape) * in[1].shape[0] * in[1].shape[1];
    },
    .run =
        [](const KernelContext& c) {
          const int64_t q = c.node->IntAttr("q");
          const int64_t m = Rows(c.in_value(0).shape), k = c.in_value(1).shape[0],
                        n = c.in_value(1).shape[1];
          // W_kj for every k of this column, then P_k = dY_ij · W_kjᵀ stacked by k.
          float* column = static_cast<float*>(c.scratch);
          float* products = column + q * k * n;
          if (!c.Wait(c.comm_b->AllGather(c.in(1), column, k * n, DType::kF32))) return;
          for (int64_t step = 0; step < q; ++step) {
            Product(c.in(0), Trans::kNo, column + step * k * n, Trans::kYes, products + step * m * k,
                    m, k, n, Accumulate::kNo, c.stream);
          }
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm->ReduceScatter(products, dst, m * k, DType::kF32));
          });
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs& attrs) {
      const int64_t q = std::get<int64_t>(attrs.at("q"));
      return Floats(q * NumElements(in[1].shape) + q * Rows(in[0].shape) * in[1].shape[0]);
    },
    .communicates = true,
    // Host memory: accumulating stages the reduce-scatter in a host vector (CollectInto).
    .host_loops = true,
});

// inputs a [.., Kb], b [.., Nb] → aᵀ · b [Kb, Nb].
const OpRegistrar kSummaMatmulTn(OpDef{
    .name = "summa_matmul_tn",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const double q = static_cast<double>(std::get<int64_t>(attrs.at("q")));
      return 2.0 * q * Rows(in[0].shape) * in[0].shape.back() * in[1].shape.back();
    },
    .run =
        [](const KernelContext& c) {
          const int64_t q = c.node->IntAttr("q");
          const int64_t m = Rows(c.in_value(0).shape), k = c.in_value(0).shape.back(),
                        n = c.in_value(1).shape.back();
          // X_ik for every k of this row, then Q_k = X_ikᵀ · dY_ij stacked by k.
          float* row = static_cast<float*>(c.scratch);
          float* products = row + q * m * k;
          if (!c.Wait(c.comm->AllGather(c.in(0), row, m * k, DType::kF32))) return;
          for (int64_t step = 0; step < q; ++step) {
            Product(row + step * m * k, Trans::kYes, c.in(1), Trans::kNo, products + step * k * n, k,
                    n, m, Accumulate::kNo, c.stream);
          }
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm_b->ReduceScatter(products, dst, k * n, DType::kF32));
          });
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs& attrs) {
      const int64_t q = std::get<int64_t>(attrs.at("q"));
      return Floats(q * NumElements(in[0].shape) + q * in[0].shape.back() * in[1].shape.back());
    },
    .communicates = true,
    // Host memory: accumulating stages the reduce-scatter in a host vector (CollectInto).
    .host_loops = true,
});

}  // namespace
}  // namespace colossal::graph::ops
