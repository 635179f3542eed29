// Small helpers shared by the op definitions in graph/ops/ (shape checks with errors
// that name the op). Internal to graph/ops.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/op_registry.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/matmul/matmul.h"
#include "runtime/base/status_macros.h"

namespace colossal::graph::ops {

inline absl::Status ShapeError(const std::string& op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("op ", op, ": ", what));
}

inline absl::Status ExpectDType(const std::string& op, const char* name, const TensorType& t,
                                DType dtype) {
  if (t.dtype == dtype) return absl::OkStatus();
  return ShapeError(op, absl::StrCat(name, " must be ", std::string(kernels::DTypeName(dtype)),
                                     ", got ", std::string(kernels::DTypeName(t.dtype))));
}

inline absl::Status ExpectRankAtLeast(const std::string& op, const char* name,
                                      const TensorType& t, size_t rank) {
  if (t.shape.size() >= rank) return absl::OkStatus();
  return ShapeError(op, absl::StrCat(name, " needs at least ", rank, " dimensions, got ",
                                     ShapeString(t.shape)));
}

// All dimensions but the last.
inline Shape Leading(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

inline int64_t Rows(const Shape& s) { return NumElements(Leading(s)); }

// The infer of ops only autodiff emits (backward ops): a graph file may not name them.
inline absl::StatusOr<std::vector<TensorType>> EmittedOnly(const std::vector<TensorType>&,
                                                           const Attrs&) {
  return absl::InvalidArgumentError("backward ops are emitted by autodiff only");
}

inline double Zero(const std::vector<TensorType>&, const Attrs&) { return 0.0; }

// The heads (attr n_head) of a packed qkv [B, T, 3C] of op `op`, checked.
inline absl::StatusOr<int64_t> CheckQkv(const std::string& op, const TensorType& qkv, const Attrs& attrs) {
  RETURN_IF_ERROR(ExpectDType(op, "qkv", qkv, DType::kF32));
  ASSIGN_OR_RETURN(int64_t heads, GetIntAttr(attrs, op, "n_head"));
  const Shape& s = qkv.shape;
  if (s.size() != 3 || s[2] % 3 != 0) {
    return ShapeError(op, absl::StrCat("qkv must be [B, T, 3C], got ", ShapeString(s)));
  }
  const int64_t c = s[2] / 3;
  if (heads < 1 || c % heads != 0) return ShapeError(op, absl::StrCat("n_head ", heads, " must divide C = ", c));
  return heads;
}

// logits [.., V] and targets i32 [..] → per-row loss and lse [rows] (softmax_xent and
// vocab_parallel_xent).
inline absl::StatusOr<std::vector<TensorType>> XentShapes(const std::string& op,
                                                          const std::vector<TensorType>& in) {
  RETURN_IF_ERROR(ExpectDType(op, "logits", in[0], DType::kF32));
  RETURN_IF_ERROR(ExpectDType(op, "targets", in[1], DType::kI32));
  RETURN_IF_ERROR(ExpectRankAtLeast(op, "logits", in[0], 1));
  if (Leading(in[0].shape) != in[1].shape) {
    return ShapeError(op, absl::StrCat("targets ", ShapeString(in[1].shape), " must match logits ",
                                       ShapeString(in[0].shape), " without its last dimension"));
  }
  Shape rows = {Rows(in[0].shape)};
  return std::vector<TensorType>{{rows, DType::kF32}, {rows, DType::kF32}};
}

// The backward of a cross-entropy node (inputs logits, targets; outputs loss, lse):
// softmax_xent_backward from its lse (the whole vocabulary's, also when split).
inline void EmitXentBackward(GradBuilder& b) {
  const int dloss = b.OutputGrad(0);
  if (dloss < 0 || !b.NeedsGrad(0)) return;
  const GradSlot s = b.Slot(0);
  b.Emit("softmax_xent_backward", {b.input(0), b.output(1), b.input(1), dloss}, {s.value}, {},
         {s.accumulate});
}

// x [.., C], weight [C], bias [C] with attr eps → y, mean [rows], rstd [rows] (layer_norm
// and layer_norm_2d, whose C is the block).
inline absl::StatusOr<std::vector<TensorType>> LayerNormShapes(const std::string& op,
                                                               const std::vector<TensorType>& in,
                                                               const Attrs& attrs) {
  for (const auto& t : in) RETURN_IF_ERROR(ExpectDType(op, "inputs", t, DType::kF32));
  RETURN_IF_ERROR(ExpectRankAtLeast(op, "x", in[0], 1));
  const int64_t c = in[0].shape.back();
  if (in[1].shape != Shape{c} || in[2].shape != Shape{c}) {
    return ShapeError(op, absl::StrCat("weight and bias must be [", c, "], got ",
                                       ShapeString(in[1].shape), " and ", ShapeString(in[2].shape)));
  }
  ASSIGN_OR_RETURN(double eps, GetFloatAttr(attrs, op, "eps"));
  if (!(eps > 0)) return ShapeError(op, "eps must be > 0");
  Shape stats = {Rows(in[0].shape)};
  return std::vector<TensorType>{in[0], {stats, DType::kF32}, {stats, DType::kF32}};
}

// The backward of a layer-norm node: `backward_op` (inputs dy, x, w, mean, rstd; outputs
// dx, dw, db) with the node's attributes; gradients nobody needs go to scratch values.
inline void EmitLayerNormBackward(GradBuilder& b, const std::string& backward_op) {
  const int dy = b.OutputGrad(0);
  if (dy < 0) return;
  const int x = b.input(0), w = b.input(1);
  GradSlot dx = b.NeedsGrad(0) ? b.Slot(0) : GradSlot{b.Scratch(x), Accumulate::kNo};
  GradSlot dw = b.NeedsGrad(1) ? b.Slot(1) : GradSlot{b.Scratch(w), Accumulate::kNo};
  GradSlot db = b.NeedsGrad(2) ? b.Slot(2) : GradSlot{b.Scratch(b.input(2)), Accumulate::kNo};
  b.Emit(backward_op, {dy, x, w, b.output(1), b.output(2)}, {dx.value, dw.value, db.value},
         b.node().attrs, {dx.accumulate, dw.accumulate, db.accumulate});
}

// Output `o` (=|+=) what `collect(dst)` writes: into the output itself when it is
// overwritten, through a scratch buffer added in when it accumulates. `collect` returns
// false when its collective failed (nothing is added then).
template <typename Collect>
void CollectInto(const KernelContext& c, Collect collect, size_t o = 0) {
  if (c.accumulate[o] == Accumulate::kNo) {
    collect(c.out(o));
    return;
  }
  const int64_t n = c.out_value(o).numel();
  std::vector<float> scratch(n);
  if (collect(scratch.data())) kernels::AddInto(scratch.data(), c.out(o), n, Accumulate::kYes, c.stream);
}

// out [m, n] (=|+=) a [m, k] · b [k, n], with a or b transposed as stored (the fused
// products of SUMMA and 3D).
inline void Product(const float* a, kernels::Trans ta, const float* b, kernels::Trans tb, float* out,
                    int64_t m, int64_t n, int64_t k, Accumulate acc, kernels::Stream stream) {
  kernels::MatmulArgs args;
  args.trans_a = ta, args.trans_b = tb;
  args.m = m, args.n = n, args.k = k;
  args.a = a, args.lda = ta == kernels::Trans::kYes ? m : k;
  args.b = b, args.ldb = tb == kernels::Trans::kYes ? k : n;
  args.c = out, args.ldc = n;
  args.accumulate = acc;
  kernels::Matmul(args, stream);
}

// The "group" attribute of a communication op: a non-empty string.
inline absl::StatusOr<std::string> GetGroupAttr(const Attrs& attrs, const std::string& op) {
  auto it = attrs.find("group");
  if (it == attrs.end() || !std::holds_alternative<std::string>(it->second) ||
      std::get<std::string>(it->second).empty()) {
    return ShapeError(op, "needs a string attribute 'group' (the process group it runs over)");
  }
  return std::get<std::string>(it->second);
}

}  // namespace colossal::graph::ops
