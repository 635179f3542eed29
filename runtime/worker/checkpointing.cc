// Sharded and unsharded checkpoints of the training state.
#include "runtime/worker/checkpointing.h"

#include <filesystem>

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

// Files of `step_dir` whose names start with `prefix` and end in .safetensors.
std::vector<std::string> FilesWithPrefix(const std::string& step_dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(step_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() > 12 &&
        name.compare(name.size() - 12, 12, ".safetensors") == 0) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::string> SaveCheckpoint(const TrainState& state, int64_t steps_done,
                                           const std::string& state_json) {
  const config::CheckpointSpec& c = state.spec->train.checkpoint;
  const int rank = state.dp ? state.dp->rank() : 0;
  const int ranks = state.dp ? state.dp->size() : 1;
  const bool sharded = state.dp && state.dp->zero_stage() >= 1;
  std::vector<std::string> extras;
  std::vector<StateTensor> optimizer = state.optimizer->StateTensors();
  if (sharded && rank != 0) {
    const std::string staging = checkpoint::StagingDir(c.dir, steps_done);
    std::error_code ec;
    fs::create_directories(staging, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(staging, ": ", ec.message()));
    RETURN_IF_ERROR(checkpoint::WriteSafetensors(
        absl::StrCat(staging, "/optimizer-", rank, ".safetensors"), Views(optimizer),
        {{"colossal_step", std::to_string(steps_done)}}));
  }
  if (sharded) {
    for (int r = 1; r < ranks; ++r) {
      extras.push_back(absl::StrCat(checkpoint::StagingDir(c.dir, steps_done), "/optimizer-", r,
                                    ".safetensors"));
    }
  }
  // Every shard is on disk before rank 0 publishes; rank 0 has published before anyone
  // moves on (a later checkpoint or the end of the job).
  if (state.dp) RETURN_IF_ERROR(state.dp->Barrier());
  absl::Status written = absl::OkStatus();
  if (rank == 0) {
    std::vector<checkpoint::TensorView> model;
    for (int i = 0; i < state.params->size(); ++i) {
      const memory::ParamInfo& info = state.params->info(i);
      model.push_back({info.name, "F32", info.shape, state.params->data(i)});
    }
    written = checkpoint::WriteCheckpoint(c.dir, steps_done, model, Views(optimizer), state_json,
                                          c.keep, extras);
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
  ASSIGN_OR_RETURN(std::string state_text, checkpoint::ReadFile(absl::StrCat(*latest, "/state.json")));
  nlohmann::json json = nlohmann::json::parse(state_text, nullptr, false);
  if (json.is_discarded() || !json.contains("optimizer_step") || !json.contains("step") ||
      !json["step"].is_number_integer() || !json["optimizer_step"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(*latest, "/state.json: not a colossal checkpoint state"));
  }
  ASSIGN_OR_RETURN(auto model, checkpoint::PieceReader::Open(FilesWithPrefix(*latest, "model")));
  for (int i = 0; i < state.params->size(); ++i) {
    const memory::ParamInfo& info = state.params->info(i);
    const std::vector<int64_t>* shape = model.WholeShape(info.name);
    if (shape != nullptr && *shape != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          *latest, ": tensor '", info.name, "' has shape ", checkpoint::ShapeString(*shape),
          ", the model needs ", checkpoint::ShapeString(info.shape)));
    }
    absl::Status s = model.ReadF32(info.name, 0, info.numel, state.params->data(i));
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  }
  ASSIGN_OR_RETURN(auto optimizer, checkpoint::PieceReader::Open(FilesWithPrefix(*latest, "optimizer")));
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
