// linear_3d: the matrix product of 3D tensor parallelism (Bian et al., "Maximizing
// Parallelism in Distributed Training for Huge Neural Networks") on a q×q×q cube, fused
// so that between the passes a rank keeps only its own blocks of the input and weight:
//   forward   X = the all-gather of x over "group" (the q token sub-blocks of one token
//             block), W = the all-gather of w over "group_b" (the q row blocks of one
//             weight block, across the depth), P = X·W (X·Wᵀ with transpose_w: the tied
//             LM head over wte), y = this rank's row block of Σ P over "group_c"
//             (reduce-scatter)
//   backward  linear_3d_backward (dy, x, w → dx, dw): dP = the all-gather of dy over
//             group_c; dx = the reduce-scatter over group of dP·Wᵀ (dP·W); dw = the
//             reduce-scatter over group_b of Xᵀ·dP (dPᵀ·X), X and W gathered again.
// Without "group_b" the weight stays where it is (W = w, dw = Xᵀ·dP written in place):
// the 2D tied head, which moves activations and logits and never the vocabulary's
// weight blocks.
// Gathering X and W again in the backward costs two all-gathers per linear more than
// keeping them, and keeps what a rank holds between the passes at 1/q³ of the
// activations and weights; the gathered blocks and products live in the node's scratch
// (OpDef::scratch), which the memory plan places in the arena for that node alone.
// Shapes: x [.., kx] (R rows), w [kx/q, n] (transposed [n/q, kx]; without group_b [kx, n]
// and [n, kx]), y [.., n]. Attribute q is the size of every group named.
#include <utility>
#include <vector>

#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"

namespace colossal::graph::ops {
namespace {

using kernels::Trans;

struct Dims {
  int64_t q, rows, k, n, w;  // q; x's rows and columns; y's columns; w's elements
  int64_t qw;                // the weight's gather: q, or 1 without group_b
  bool transposed;
};

absl::StatusOr<Dims> GetDims(const std::string& op, const TensorType& x, const TensorType& w,
                             const Attrs& attrs) {
  RETURN_IF_ERROR(GetGroupAttr(attrs, op).status());
  // group_c is required, group_b optional.
  for (auto [key, required] : {std::pair{"group_b", false}, std::pair{"group_c", true}}) {
    auto it = attrs.find(key);
    if ((it == attrs.end() && required) ||
        (it != attrs.end() && !std::holds_alternative<std::string>(it->second))) {
      return ShapeError(op, absl::StrCat("needs a string attribute '", key, "'"));
    }
  }
  ASSIGN_OR_RETURN(int64_t q, GetIntAttr(attrs, op, "q"));
  RETURN_IF_ERROR(ExpectDType(op, "x", x, DType::kF32));
  RETURN_IF_ERROR(ExpectDType(op, "w", w, DType::kF32));
  RETURN_IF_ERROR(ExpectRankAtLeast(op, "x", x, 1));
  auto t = attrs.find("transpose_w");
  const bool transposed = t != attrs.end() && std::holds_alternative<int64_t>(t->second) &&
                          std::get<int64_t>(t->second) != 0;
  const int64_t qw = attrs.count("group_b") ? q : 1;
  Dims d{q, Rows(x.shape), x.shape.back(), 0, NumElements(w.shape), qw, transposed};
  const bool chains = w.shape.size() == 2 && (transposed ? w.shape[1] == d.k : w.shape[0] * qw == d.k);
  if (q < 1 || !chains) {
    return ShapeError(op, absl::StrCat("x ", ShapeString(x.shape), " and w ", ShapeString(w.shape),
                                       transposed ? " (transposed)" : "",
                                       " gathered over q = ", q, " do not chain"));
  }
  d.n = transposed ? w.shape[0] * qw : w.shape[1];
  return d;
}

// The gathered weight (or, in the backward, its gradient before the reduce-scatter);
// none when the weight stays in place.
int64_t GatheredW(const Dims& d) { return d.qw > 1 ? d.qw * d.w : 0; }

// X, W and P (forward) or dP, W and X (backward): the same three sizes.
int64_t ScratchBytes(const Dims& d) {
  return static_cast<int64_t>(sizeof(float)) * (d.q * d.rows * d.k + GatheredW(d) + d.q * d.rows * d.n);
}

Dims NodeDims(const KernelContext& c) {
  return *GetDims(c.node->op, {c.in_value(0).shape, DType::kF32},
                  {c.in_value(1).shape, DType::kF32}, c.node->attrs);
}

const OpRegistrar kLinear3d(OpDef{
    .name = "linear_3d",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      ASSIGN_OR_RETURN(Dims d, GetDims("linear_3d", in[0], in[1], attrs));
      Shape out = Leading(in[0].shape);
      out.push_back(d.n);
      return std::vector<TensorType>{{out, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy < 0 || (!b.NeedsGrad(0) && !b.NeedsGrad(1))) return;
          const int x = b.input(0), w = b.input(1);
          GradSlot dx = b.NeedsGrad(0) ? b.Slot(0) : GradSlot{b.Scratch(x), Accumulate::kNo};
          GradSlot dw = b.NeedsGrad(1) ? b.Slot(1) : GradSlot{b.Scratch(w), Accumulate::kNo};
          b.Emit("linear_3d_backward", {dy, x, w}, {dx.value, dw.value}, b.node().attrs,
                 {dx.accumulate, dw.accumulate});
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const Dims d = *GetDims("linear_3d", in[0], in[1], attrs);
      return 2.0 * d.q * d.rows * d.k * d.n;
    },
    .run =
        [](const KernelContext& c) {
          const Dims d = NodeDims(c);
          float* xs = static_cast<float*>(c.scratch);
          float* gathered = xs + d.q * d.rows * d.k;
          float* p = gathered + GatheredW(d);
          const float* ws = d.qw > 1 ? gathered : c.in(1);
          if (!c.Wait(c.comm->AllGather(c.in(0), xs, d.rows * d.k, DType::kF32)) ||
              (d.qw > 1 && !c.Wait(c.comm_b->AllGather(c.in(1), gathered, d.w, DType::kF32)))) {
            return;
          }
          Product(xs, Trans::kNo, ws, d.transposed ? Trans::kYes : Trans::kNo, p, d.q * d.rows, d.n,
                  d.k, Accumulate::kNo, c.stream);
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm_c->ReduceScatter(p, dst, d.rows * d.n, DType::kF32));
          });
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&,
                  const Attrs& attrs) { return ScratchBytes(*GetDims("linear_3d", in[0], in[1], attrs)); },
    .communicates = true,
    // Host memory: accumulating stages the reduce-scatter in a host vector (CollectInto).
    .host_loops = true,
});

// inputs dy [.., n], x, w → dx, dw.
const OpRegistrar kLinear3dBackward(OpDef{
    .name = "linear_3d_backward",
    .min_inputs = 3,
    .max_inputs = 3,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      const Dims d = *GetDims("linear_3d_backward", in[1], in[2], attrs);
      return 4.0 * d.q * d.rows * d.k * d.n;
    },
    .run =
        [](const KernelContext& c) {
          const Dims d = *GetDims(c.node->op, {c.in_value(1).shape, DType::kF32},
                                  {c.in_value(2).shape, DType::kF32}, c.node->attrs);
          const int64_t rows = d.q * d.rows;
          const bool gather_w = d.qw > 1;
          float* dp = static_cast<float*>(c.scratch);
          float* gathered = dp + rows * d.n;      // W, then the gathered dW
          float* xs = gathered + GatheredW(d);  // the gathered dx, then X
          const float* ws = gather_w ? gathered : c.in(2);
          if (!c.Wait(c.comm_c->AllGather(c.in(0), dp, d.rows * d.n, DType::kF32)) ||
              (gather_w && !c.Wait(c.comm_b->AllGather(c.in(2), gathered, d.w, DType::kF32)))) {
            return;
          }
          // dX = dP · Wᵀ (W [k, n]) or dP · W (W [n, k]).
          Product(dp, Trans::kNo, ws, d.transposed ? Trans::kNo : Trans::kYes, xs, rows, d.k, d.n,
                  Accumulate::kNo, c.stream);
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm->ReduceScatter(xs, dst, d.rows * d.k, DType::kF32));
          }, 0);
          if (!c.status->ok() || !c.Wait(c.comm->AllGather(c.in(1), xs, d.rows * d.k, DType::kF32))) return;
          // dW = Xᵀ · dP [k, n] or dPᵀ · X [n, k]: this rank's rows reduce-scattered, or
          // (the weight in place) written or added directly.
          float* dw = gather_w ? gathered : c.out(1);
          const Accumulate acc = gather_w ? Accumulate::kNo : c.accumulate[1];
          if (d.transposed) {
            Product(dp, Trans::kYes, xs, Trans::kNo, dw, d.n, d.k, rows, acc, c.stream);
          } else {
            Product(xs, Trans::kYes, dp, Trans::kNo, dw, d.k, d.n, rows, acc, c.stream);
          }
          if (!gather_w) return;
          CollectInto(c, [&](float* dst) {
            return c.Wait(c.comm_b->ReduceScatter(gathered, dst, d.w, DType::kF32));
          }, 1);
        },
    .scratch = [](const std::vector<TensorType>& in, const std::vector<TensorType>&,
                  const Attrs& attrs) {
      return ScratchBytes(*GetDims("linear_3d_backward", in[1], in[2], attrs));
    },
    .communicates = true,
    // Host memory: accumulating stages the reduce-scatters in host vectors (CollectInto).
    .host_loops = true,
});

}  // namespace
}  // namespace colossal::graph::ops
