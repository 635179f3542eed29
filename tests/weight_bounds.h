// How close two training runs' final weights must be, by what the runs differ in. One
// definition for the threaded tests (training_testing.h) and the multi-process ones
// (compare_weights, run by tests/*_multiprocess_test.sh).
//   kTight           every element within 1e-5 relative (+1e-6 absolute), every tensor
//                    within 1e-5 in norm: runs that differ only in how gradient sums are
//                    split over ranks, in one process (data parallelism, ZeRO).
//   kRun             per element |a − b| ≤ 1e-4·|a| + 1e-5, per tensor ‖a − b‖₂ ≤
//                    1e-5·‖a‖₂: the same across processes, where summation orders differ
//                    further; a gradient element that nearly cancels carries a relative
//                    error far above fp32's, and AdamW's normalized step m̂/(√v̂+ε) turns
//                    it into ~1e-6 on a few weights of 1e-2 (seen: 3 of 34,000, 1.1e-4).
//   kTensorParallel  per element |a − b| ≤ 1e-2·rms(a) + 1e-6 (no localized gross
//                    error), per tensor of >= 1024 elements ‖a − b‖₂ ≤ 2e-4·‖a‖₂: runs
//                    whose matrix products, layer-norm gradients and softmax are
//                    themselves split. Their gradients equal one rank's to ~1e-7 relative
//                    (graph/tensor_parallel_test.cc checks it elementwise), but a gradient
//                    element that is zero in exact arithmetic comes out as rounding noise
//                    of a different size (seen: h.0.mlp.c_fc.weight[31, 37] at step 1,
//                    -1.7e-9 on one rank, -2.2e-9 on two, its neighbours 3e-3), and AdamW's
//                    first step g/(|g| + ε), ε = 1e-8, turns that into 15% vs 18% of a
//                    full step that later steps carry on (in a small tensor one such
//                    element dominates the norm). Measured over 10 steps at lr 1e-2
//                    (AdamW, tensor 2 and 4, data 2 x tensor 2 with ZeRO 0/1/3): at worst
//                    8.2e-5 in norm, one element 3.7e-3 of its tensor's rms; LAMB runs
//                    stay below 1e-7 in norm.
// All leave out the attention key bias (c_attn.bias[C, 2C)): its exact gradient is zero
// (a constant added to every key score of a row leaves the softmax unchanged), so its
// fp32 gradient is rounding noise whose sign depends on summation order, and Adam-style
// updates turn that noise into steps of ±lr. Those elements may differ by up to 0.1 (the
// sum of the learning rates of these runs).
#pragma once

#include <string>
#include <vector>

namespace colossal::testing {

enum class Bounds { kTight, kRun, kTensorParallel };

struct TensorComparison {
  bool ok = true;
  std::string failure;         // the first element or the norm that is out of bounds
  double worst_of_rms = 0;     // largest |a − b| / rms(a) (key bias left out)
  double norm_relative = 0;    // ‖a − b‖₂ / ‖a‖₂
  bool norm_checked = false;
};

// Compares tensor `name` of two runs (same element count).
TensorComparison CompareTensor(const std::string& name, const std::vector<float>& a,
                               const std::vector<float>& b, Bounds bounds);

}  // namespace colossal::testing
