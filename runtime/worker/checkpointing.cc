// Sharded and unsharded checkpoints of the training state.
#include "runtime/worker/checkpointing.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/file_io.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"

namespace colossal::worker {
namespace {

namespace fs = std::filesystem;

std::vector<checkpoint::TensorView> Views(const std::vector<StateTensor>& tensors) {
  std::vector<checkpoint::TensorView> views;
  for (const StateTensor& t : tensors) views.push_back({t.name, "F32", t.shape, t.data});
  return views;
}

std::vector<checkpoint::TensorView> PieceViews(const memory::ParamStore& params,
                                              const parallel::HeldParams& held) {
  std::vector<checkpoint::TensorView> views;
  for (size_t i = 0; i < held.segments.size(); ++i) {
    const memory::ParamSegment& s = held.segments[i];
    const memory::ParamInfo& info = params.info(s.param);
    const bool whole = s.offset == 0 && s.length == info.numel;
    views.push_back({whole ? info.name : checkpoint::PieceName(info.name, s.offset), "F32",
                     whole ? info.shape : std::vector<int64_t>{s.length}, held.data[i]});
  }
  return views;
}

}  // namespace

parallel::HeldParams Held(const TrainState& state) {
  if (state.dp) return state.dp->Held();
  parallel::HeldParams h;
  h.segments = state.params->WholeTensors();
  h.data = state.params->SegmentData(h.segments);
  return h;
}

absl::StatusOr<std::string> SaveCheckpoint(const TrainState& state, int64_t steps_done,
                                           const std::string& state_json) {
  const config::CheckpointSpec& c = state.spec->train.checkpoint;
  const int rank = state.dp ? state.dp->rank() : 0;
  const int ranks = state.dp ? state.dp->size() : 1;
  const bool sharded = state.dp && state.dp->zero_stage() >= 1;
  const bool params_sharded = state.dp && state.dp->params_sharded();
  std::vector<std::string> extras;
  std::vector<StateTensor> optimizer = state.optimizer->StateTensors();
  const parallel::HeldParams held = Held(state);
  const std::string staging = checkpoint::StagingDir(c.dir, steps_done);
  if (sharded && rank != 0) {
    std::error_code ec;
    fs::create_directories(staging, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(staging, ": ", ec.message()));
    const std::map<std::string, std::string> meta = {{"colossal_step", std::to_string(steps_done)}};
    RETURN_IF_ERROR(checkpoint::WriteSafetensors(checkpoint::ShardFile(staging, "optimizer", rank),
                                                 Views(optimizer), meta));
    if (params_sharded) {
      RETURN_IF_ERROR(checkpoint::WriteSafetensors(checkpoint::ShardFile(staging, "model", rank),
                                                   PieceViews(*state.params, held), meta));
    }
  }
  if (sharded) {
    for (int r = 1; r < ranks; ++r) {
      extras.push_back(checkpoint::ShardFile(staging, "optimizer", r));
      if (params_sharded) extras.push_back(checkpoint::ShardFile(staging, "model", r));
    }
  }
  // Every shard is on disk before rank 0 publishes; rank 0 has published before anyone
  // moves on (a later checkpoint or the end of the job).
  if (state.dp) RETURN_IF_ERROR(state.dp->Barrier());
  absl::Status written = absl::OkStatus();
  if (rank == 0) {
    written = checkpoint::WriteCheckpoint(c.dir, steps_done, PieceViews(*state.params, held),
                                          Views(optimizer), state_json, c.keep, extras);
  }
  if (state.dp) {
    absl::Status barrier = state.dp->Barrier();
    if (written.ok()) written = barrier;
  }
  RETURN_IF_ERROR(written);
  return checkpoint::StepDir(c.dir, steps_done);
}

absl::StatusOr<std::optional<Restored>> RestoreLatest(const TrainState& state) {
  ASSIGN_OR_RETURN(auto latest, checkpoint::LatestCheckpoint(state.spec->train.checkpoint.dir));
  if (!latest) return std::optional<Restored>();
  ASSIGN_OR_RETURN(std::string state_text,
                   checkpoint::ReadFile(absl::StrCat(*latest, "/", std::string(checkpoint::kStateFile))));
  nlohmann::json json = nlohmann::json::parse(state_text, nullptr, false);
  if (json.is_discarded() || !json.contains("optimizer_step") || !json.contains("step") ||
      !json["step"].is_number_integer() || !json["optimizer_step"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(*latest, "/state.json: not a colossal checkpoint state"));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> model_files, checkpoint::StepFiles(*latest, "model"));
  ASSIGN_OR_RETURN(auto model, checkpoint::PieceReader::Open(model_files));
  for (int i = 0; i < state.params->size(); ++i) {
    const memory::ParamInfo& info = state.params->info(i);
    const std::vector<int64_t>* shape = model.WholeShape(info.name);
    if ((shape != nullptr && *shape != info.shape) ||
        (shape == nullptr && model.CoveredElements(info.name) != info.numel)) {
      return absl::InvalidArgumentError(absl::StrCat(
          *latest, ": tensor '", info.name, "' does not match the model's ",
          checkpoint::ShapeString(info.shape)));
    }
  }
  const parallel::HeldParams held = Held(state);
  for (size_t i = 0; i < held.segments.size(); ++i) {
    const memory::ParamSegment& seg = held.segments[i];
    absl::Status s = model.ReadF32(state.params->info(seg.param).name, seg.offset, seg.length, held.data[i]);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> optimizer_files, checkpoint::StepFiles(*latest, "optimizer"));
  ASSIGN_OR_RETURN(auto optimizer, checkpoint::PieceReader::Open(optimizer_files));
  absl::Status s = state.optimizer->LoadState(optimizer);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  Restored r;
  r.path = *latest;
  r.step = json["step"].get<int64_t>();
  r.optimizer_step = json["optimizer_step"].get<int64_t>();
  state.optimizer->set_step(r.optimizer_step);
  return std::optional<Restored>(r);
}

}  // namespace colossal::worker
