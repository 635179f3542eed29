// matmul: y = x · W (+ b), the Hugging Face Conv1D layout (W [K, N]), or y = x · Wᵀ
// with transpose_w = 1 (W [N, K]: the tied LM head over wte). Backward ops:
// matmul_grad_input (dx = dy · op(W)ᵀ), matmul_grad_weight (dW = xᵀ dy, or dyᵀ x when
// transposed) and bias_grad (db = Σ_rows dy). bias_add: y = x + b over the last
// dimension (the bias of a row-parallel linear, added once after its all-reduce).
//
// Mixed precision: a "compute" attribute ("bf16" or "f16", set by SetComputePrecision on
// the forward node and inherited by its backward nodes) makes the three GEMMs round their
// two operands to that type in the node's scratch and run kernels::MatmulLow (products
// and sums in fp32, the output fp32), as autocast does for a linear layer; the values in
// the graph, the parameters and their gradients stay fp32.
#include "graph/autodiff.h"
#include "graph/ops/op_helpers.h"
#include "kernels/convert/convert.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/matmul/matmul.h"

namespace colossal::graph::ops {
namespace {

using kernels::MatmulArgs;
using kernels::Trans;

struct Dims {
  int64_t m, n, k;
  bool transpose_w;
};

// x [.., K] and W [K, N] / [N, K].
Dims GetDims(const Shape& x, const Shape& w, bool transpose_w) {
  Dims d;
  d.k = x.back();
  d.m = Rows(x);
  d.n = transpose_w ? w[0] : w[1];
  d.transpose_w = transpose_w;
  return d;
}

Dims NodeDims(const KernelContext& c, int x_index, int w_index) {
  return GetDims(c.in_value(x_index).shape, c.in_value(w_index).shape,
                 c.node->IntAttrOr("transpose_w", 0) != 0);
}

// The node's "compute" type: kF32 when unset, else kBF16 or kF16.
absl::StatusOr<DType> ComputeOf(const Attrs& attrs, const std::string& op) {
  auto it = attrs.find("compute");
  if (it == attrs.end()) return DType::kF32;
  const std::string* name = std::get_if<std::string>(&it->second);
  if (name != nullptr && *name == "bf16") return DType::kBF16;
  if (name != nullptr && *name == "f16") return DType::kF16;
  return absl::InvalidArgumentError(absl::StrCat(op, ": attribute compute must be \"bf16\" or \"f16\""));
}
DType NodeCompute(const KernelContext& c) { return *ComputeOf(c.node->attrs, c.node->op); }

// The 16-bit operands live in the scratch: input 0's elements, then input 1's at a
// 64-byte boundary.
int64_t Aligned64(int64_t bytes) { return (bytes + 63) / 64 * 64; }
int64_t LowScratch(const std::vector<TensorType>& in, const std::vector<TensorType>&, const Attrs& attrs) {
  absl::StatusOr<DType> compute = ComputeOf(attrs, "matmul");
  if (!compute.ok() || *compute == DType::kF32) return 0;
  return Aligned64(NumElements(in[0].shape) * 2) + Aligned64(NumElements(in[1].shape) * 2);
}

// Runs `a` (whose a/b point at the node's inputs 0 and 1, in either order) in the node's
// compute type.
void RunGemm(const KernelContext& c, const MatmulArgs& a) {
  const DType compute = NodeCompute(c);
  if (compute == DType::kF32) {
    kernels::Matmul(a, c.stream);
    return;
  }
  const int64_t n0 = c.in_value(0).numel(), n1 = c.in_value(1).numel();
  auto* low0 = static_cast<uint16_t*>(c.scratch);
  auto* low1 = reinterpret_cast<uint16_t*>(static_cast<char*>(c.scratch) + Aligned64(n0 * 2));
  kernels::CastTo16(compute, c.in(0), low0, n0, c.stream);
  kernels::CastTo16(compute, c.in(1), low1, n1, c.stream);
  auto low_of = [&](const float* p) -> const uint16_t* {
    if (p == c.in(0)) return low0;
    COL_CHECK(p == c.in(1));
    return low1;
  };
  kernels::MatmulLowArgs l;
  l.trans_a = a.trans_a, l.trans_b = a.trans_b;
  l.m = a.m, l.n = a.n, l.k = a.k;
  l.a = low_of(a.a), l.lda = a.lda, l.b = low_of(a.b), l.ldb = a.ldb;
  l.c = a.c, l.ldc = a.ldc, l.bias = a.bias, l.alpha = a.alpha, l.accumulate = a.accumulate;
  kernels::MatmulLow(compute, l, c.stream);
}

const OpRegistrar kMatmul(OpDef{
    .name = "matmul",
    .min_inputs = 2,
    .max_inputs = 3,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs& attrs) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "matmul";
      RETURN_IF_ERROR(ComputeOf(attrs, op).status());
      RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kF32));
      RETURN_IF_ERROR(ExpectDType(op, "w", in[1], DType::kF32));
      RETURN_IF_ERROR(ExpectRankAtLeast(op, "x", in[0], 1));
      if (in[1].shape.size() != 2) {
        return ShapeError(op, absl::StrCat("w must be 2-D, got ", ShapeString(in[1].shape)));
      }
      bool t = false;
      if (attrs.count("transpose_w")) {
        ASSIGN_OR_RETURN(int64_t tw, GetIntAttr(attrs, op, "transpose_w"));
        t = tw != 0;
      }
      const int64_t k = t ? in[1].shape[1] : in[1].shape[0];
      const int64_t n = t ? in[1].shape[0] : in[1].shape[1];
      if (in[0].shape.back() != k) {
        return ShapeError(op, absl::StrCat("x ", ShapeString(in[0].shape), " and w ",
                                           ShapeString(in[1].shape),
                                           t ? " (transposed)" : "", " do not chain"));
      }
      if (in.size() == 3) {
        RETURN_IF_ERROR(ExpectDType(op, "bias", in[2], DType::kF32));
        if (in[2].shape != Shape{n}) {
          return ShapeError(op, absl::StrCat("bias must be [", n, "], got ",
                                             ShapeString(in[2].shape)));
        }
      }
      Shape out = Leading(in[0].shape);
      out.push_back(n);
      return std::vector<TensorType>{{out, DType::kF32}};
    },
    .backward =
        [](GradBuilder& b) {
          int dy = b.OutputGrad(0);
          if (dy < 0) return;
          Attrs attrs = b.node().attrs;
          const int x = b.input(0), w = b.input(1);
          const bool has_bias = b.node().inputs.size() == 3;
          if (b.NeedsGrad(0)) {
            GradSlot s = b.Slot(0);
            b.Emit("matmul_grad_input", {dy, w}, {s.value}, attrs, {s.accumulate});
          }
          if (b.NeedsGrad(1)) {
            GradSlot s = b.Slot(1);
            b.Emit("matmul_grad_weight", {x, dy}, {s.value}, attrs, {s.accumulate});
          }
          if (has_bias && b.NeedsGrad(2)) {
            GradSlot s = b.Slot(2);
            b.Emit("bias_grad", {dy}, {s.value}, {}, {s.accumulate});
          }
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs& attrs) {
      auto it = attrs.find("transpose_w");
      bool t = it != attrs.end() && std::get<int64_t>(it->second) != 0;
      Dims d = GetDims(in[0].shape, in[1].shape, t);
      return 2.0 * d.m * d.n * d.k;
    },
    .run =
        [](const KernelContext& c) {
          Dims d = NodeDims(c, 0, 1);
          MatmulArgs a;
          a.trans_b = d.transpose_w ? Trans::kYes : Trans::kNo;
          a.m = d.m, a.n = d.n, a.k = d.k;
          a.a = c.in(0), a.lda = d.k;
          a.b = c.in(1), a.ldb = d.transpose_w ? d.k : d.n;
          a.c = c.out(0), a.ldc = d.n;
          a.bias = c.node->inputs.size() == 3 ? c.in(2) : nullptr;
          a.accumulate = c.accumulate[0];
          RunGemm(c, a);
        },
    .scratch = LowScratch,
});

// dx [M, K] = dy [M, N] · op(W)ᵀ.
const OpRegistrar kMatmulGradInput(OpDef{
    .name = "matmul_grad_input",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 2.0 * NumElements(in[0].shape) * NumElements(in[1].shape) /
             std::max<int64_t>(1, in[0].shape.back()) * 1.0;
    },
    .run =
        [](const KernelContext& c) {
          // inputs: dy [.., N], W; output dx [.., K]
          const bool t = c.node->IntAttrOr("transpose_w", 0) != 0;
          const Shape& w = c.in_value(1).shape;
          const int64_t k = t ? w[1] : w[0], n = t ? w[0] : w[1];
          MatmulArgs a;
          a.m = Rows(c.in_value(0).shape), a.n = k, a.k = n;
          a.a = c.in(0), a.lda = n;
          a.b = c.in(1);
          a.trans_b = t ? Trans::kNo : Trans::kYes;
          a.ldb = t ? k : n;
          a.c = c.out(0), a.ldc = k;
          a.accumulate = c.accumulate[0];
          RunGemm(c, a);
        },
    .scratch = LowScratch,
});

// dW = xᵀ dy ([K, N]) or dyᵀ x ([N, K]) when transposed.
const OpRegistrar kMatmulGradWeight(OpDef{
    .name = "matmul_grad_weight",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return 2.0 * NumElements(in[0].shape) * in[1].shape.back();
    },
    .run =
        [](const KernelContext& c) {
          const bool t = c.node->IntAttrOr("transpose_w", 0) != 0;
          const int64_t k = c.in_value(0).shape.back();
          const int64_t n = c.in_value(1).shape.back();
          const int64_t rows = Rows(c.in_value(0).shape);
          MatmulArgs a;
          a.trans_a = Trans::kYes;
          a.k = rows;
          if (!t) {
            a.m = k, a.n = n;
            a.a = c.in(0), a.lda = k;
            a.b = c.in(1), a.ldb = n;
            a.c = c.out(0), a.ldc = n;
          } else {
            a.m = n, a.n = k;
            a.a = c.in(1), a.lda = n;
            a.b = c.in(0), a.ldb = k;
            a.c = c.out(0), a.ldc = k;
          }
          a.accumulate = c.accumulate[0];
          RunGemm(c, a);
        },
    .scratch = LowScratch,
});

const OpRegistrar kBiasGrad(OpDef{
    .name = "bias_grad",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = EmittedOnly,
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[0].shape));
    },
    .run =
        [](const KernelContext& c) {
          const int64_t n = c.in_value(0).shape.back();
          kernels::BiasGrad(c.in(0), Rows(c.in_value(0).shape), n, n, c.out(0), c.accumulate[0],
                            c.stream);
        },
});

const OpRegistrar kBiasAdd(OpDef{
    .name = "bias_add",
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = [](const std::vector<TensorType>& in,
                const Attrs&) -> absl::StatusOr<std::vector<TensorType>> {
      const std::string op = "bias_add";
      RETURN_IF_ERROR(ExpectDType(op, "x", in[0], DType::kF32));
      RETURN_IF_ERROR(ExpectDType(op, "bias", in[1], DType::kF32));
      RETURN_IF_ERROR(ExpectRankAtLeast(op, "x", in[0], 1));
      if (in[1].shape != Shape{in[0].shape.back()}) {
        return ShapeError(op, absl::StrCat("bias must be [", in[0].shape.back(), "], got ",
                                           ShapeString(in[1].shape)));
      }
      return std::vector<TensorType>{in[0]};
    },
    .backward =
        [](GradBuilder& b) {
          const int dy = b.OutputGrad(0);
          if (dy < 0) return;
          if (b.NeedsGrad(1)) {
            GradSlot s = b.Slot(1);
            b.Emit("bias_grad", {dy}, {s.value}, {}, {s.accumulate});
          }
          if (b.NeedsGrad(0)) b.PassThrough(0, dy);
        },
    .flops = [](const std::vector<TensorType>& in, const Attrs&) {
      return static_cast<double>(NumElements(in[0].shape));
    },
    .run =
        [](const KernelContext& c) {
          const int64_t n = c.in_value(1).numel(), rows = Rows(c.in_value(0).shape);
          for (int64_t r = 0; r < rows; ++r) {
            kernels::Add(c.in(0) + r * n, c.in(1), c.out(0) + r * n, n, c.stream);
          }
        },
    .in_place = {{0, 0}},
});

}  // namespace
}  // namespace colossal::graph::ops
