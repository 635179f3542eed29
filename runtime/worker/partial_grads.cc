#include "runtime/worker/partial_grads.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace colossal::worker {

absl::Status SumPartialGrads(const std::vector<graph::Layout>& layouts,
                             const std::vector<memory::ParamSegment>& segments, const std::vector<float*>& grads,
                             const std::string& axis, parallel::Communicator* comm) {
  std::vector<size_t> partial;
  int64_t n = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (!layouts[segments[i].param].partial_over(axis)) continue;
    partial.push_back(i);
    n += segments[i].length;
  }
  if (partial.empty()) return absl::OkStatus();
  if (comm == nullptr) return absl::InternalError(absl::StrCat("no ", axis, " group for partial gradients"));
  std::vector<float> packed(n);
  int64_t at = 0;
  for (size_t i : partial) {
    std::copy(grads[i], grads[i] + segments[i].length, packed.data() + at);
    at += segments[i].length;
  }
  if (absl::Status s = comm->AllReduce(packed.data(), n, kernels::DType::kF32)->Wait(); !s.ok()) return s;
  at = 0;
  for (size_t i : partial) {
    std::copy(packed.data() + at, packed.data() + at + segments[i].length, grads[i]);
    at += segments[i].length;
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
