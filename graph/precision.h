// Mixed precision as a graph pass: SetComputePrecision marks every forward matmul node
// with compute = "bf16" or "f16" (matmul_op.cc), before autodiff, so its backward GEMMs
// (matmul_grad_input, matmul_grad_weight) inherit it. Those GEMMs then round their
// operands to the low type and accumulate in fp32, as PyTorch's autocast does for a
// linear layer; every value in the graph, the parameters and their gradients stay fp32,
// and layer norm, softmax, the loss and attention (its own fused kernel) run in fp32.
// The 2D/2.5D/3D tensor-parallel GEMMs (SUMMA, the 3D linear) have no mixed-precision
// form: the job validation refuses them with a low precision.
#pragma once

#include "absl/status/statusor.h"
#include "graph/ir.h"

namespace colossal::graph {

// Marks the forward matmul nodes of `graph` (which must not have its backward yet) to
// compute in `dtype` (kBF16 or kF16; kF32 is a no-op). Returns how many were marked.
absl::StatusOr<int> SetComputePrecision(Graph& graph, DType dtype);

}  // namespace colossal::graph
