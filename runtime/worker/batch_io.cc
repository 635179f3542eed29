// Host staging of a micro-batch's inputs and losses, copied through Executor::Write / Read.
#include "runtime/worker/batch_io.h"

#include <span>

#include "runtime/base/status_macros.h"

namespace colossal::worker {

absl::Status BatchIo::FillWindows(graph::Executor& ex, int ids, int targets, const data::WindowLoader& loader,
                                  int64_t first, int64_t count, const data::WindowLoader::Runs& runs) {
  int64_t row = 0;
  for (const auto& run : runs) row += run.second;
  const size_t n = static_cast<size_t>(count * row);
  ids_.resize(n);
  targets_.resize(n);
  loader.Fill(first, count, ids_.data(), targets_.data(), runs);
  if (ids >= 0) RETURN_IF_ERROR(ex.WriteValue<int32_t>(ids, ids_));
  if (targets >= 0) RETURN_IF_ERROR(ex.WriteValue<int32_t>(targets, targets_));
  return absl::OkStatus();
}

absl::Status BatchIo::AddValidationLoss(const graph::Executor& ex, const Model& model, int64_t rows, double& sum,
                                        double& tokens) {
  const int64_t b = model.batch, T = model.seq;
  if (model.token_loss >= 0) {
    floats_.resize(static_cast<size_t>(ex.graph().value(model.token_loss).numel()));
    RETURN_IF_ERROR(ex.ReadValue<float>(model.token_loss, floats_));
    for (int64_t r = 0; r < model.token_rows; ++r) {
      if (model.token_row_start + r >= rows) break;
      for (int64_t t = 0; t < T; ++t) sum += floats_[r * T + t];
      tokens += static_cast<double>(T);
    }
  } else {
    ASSIGN_OR_RETURN(const float loss, ex.ReadScalar<float>(model.loss));
    sum += loss * static_cast<double>(b * T);
    tokens += static_cast<double>(b * T);
  }
  return absl::OkStatus();
}

absl::Status WritePositions(graph::Executor& ex, int positions, int64_t batch,
                            const parallel::SequenceLayout& layout) {
  std::vector<int32_t> staged(static_cast<size_t>(ex.graph().value(positions).numel()));
  parallel::FillPositions(staged.data(), batch, layout);
  return ex.WriteValue<int32_t>(positions, staged);
}

}  // namespace colossal::worker
