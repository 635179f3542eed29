// Sharded and unsharded checkpoints of the training state.
#include "runtime/worker/checkpointing.h"

#include <deque>

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/file_io.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"
#include "graph/ir.h"
#include "runtime/worker/stored_pieces.h"

namespace colossal::worker {
namespace {

namespace fs = std::filesystem;

std::vector<checkpoint::TensorView> Views(const std::vector<StateTensor>& tensors) {
  std::vector<checkpoint::TensorView> views;
  for (const StateTensor& t : tensors) views.push_back({t.name, "F32", t.shape, t.data});
  return views;
}

const graph::Layout& LayoutOf(const TrainState& state, int param) {
  static const graph::Layout kWhole;
  return state.layouts ? (*state.layouts)[param] : kWhole;
}


// The model pieces of this rank's segments; pieces whose rows are not back to back in a
// segment (c_attn's q, k, v thirds of a column split) are gathered into `gathered`.
std::vector<checkpoint::TensorView> PieceViews(const TrainState& state, const parallel::HeldParams& held,
                                              std::deque<std::vector<float>>& gathered) {
  std::vector<checkpoint::TensorView> views;
  for (size_t i = 0; i < held.segments.size(); ++i) {
    const memory::ParamSegment& s = held.segments[i];
    if (state.stored && !(*state.stored)[s.param]) continue;
    const memory::ParamInfo& info = state.params->info(s.param);
    for (const StoredPiece& p :
         StoredPieces(info.name, info.shape, LayoutOf(state, s.param), s.offset, s.length)) {
      views.push_back({p.name, "F32", p.shape, p.Data(held.data[i], gathered)});
    }
  }
  return views;
}

absl::Status WorldBarrier(const TrainState& state) {
  if (state.groups == nullptr || state.groups->world() == nullptr) return absl::OkStatus();
  return state.groups->world()->Barrier()->Wait();
}

// `held` with host pointers: itself on the host; off it, each segment copied into
// `staged` (which must outlive the returned pointers).
parallel::HeldParams OnHost(const TrainState& state, parallel::HeldParams held,
                            std::deque<std::vector<float>>& staged) {
  for (size_t i = 0; i < held.segments.size(); ++i) {
    held.data[i] = const_cast<float*>(state.params->place().HostView(held.data[i], held.segments[i].length, staged));
  }
  return held;
}

}  // namespace

std::string CheckpointStateJson(const config::JobSpec& spec, const StateFacts& f,
                                const std::vector<memory::ParamStore::Spec>& shapes, const graph::GptConfig* gpt) {
  nlohmann::json state;
  state["format"] = "colossal-checkpoint-1";
  state["job"] = spec.name;
  state["step"] = f.steps_done;
  state["optimizer_step"] = f.optimizer_step;
  state["optimizer"] = std::string(config::OptimizerTypeName(spec.train.optimizer.type));
  state["loss"] = f.loss;
  state["loss_scale"] = {{"scale", f.loss_scale}, {"good_steps", f.good_steps}, {"skipped_steps", f.skipped_steps}};
  state["tokenizer"] = spec.data.tokenizer;
  state["data_parallel"] = f.data;
  state["tensor_parallel"] = f.tensor;
  state["pipeline_parallel"] = f.pipeline;
  state["sequence_parallel"] = f.sequence;
  state["zero"] = spec.parallel.zero;
  nlohmann::json by_name = nlohmann::json::object();
  for (const memory::ParamStore::Spec& p : shapes) by_name[p.name] = p.shape;
  state["param_shapes"] = by_name;
  if (gpt != nullptr) {
    state["model"] = {{"type", "gpt"},          {"n_layer", gpt->n_layer}, {"n_head", gpt->n_head},
                      {"d_model", gpt->d_model}, {"seq_len", gpt->seq_len}, {"vocab", gpt->vocab}};
  }
  return state.dump(2);
}

parallel::HeldParams Held(const TrainState& state) {
  COL_CHECK(state.gemini == nullptr);  // chunks are reached through GeminiState
  if (state.dp) return state.dp->Held();
  parallel::HeldParams h;
  h.segments = state.params->WholeTensors();
  h.data = state.params->SegmentData(h.segments);
  return h;
}

absl::StatusOr<std::string> SaveCheckpoint(const TrainState& state, int64_t steps_done,
                                           const std::string& state_json) {
  const config::CheckpointSpec& c = state.spec->train.checkpoint;
  const int rank = state.groups ? state.groups->rank() : 0;
  const int ranks = state.groups ? state.groups->world_size() : 1;
  const int zero = state.dp ? state.dp->zero_stage() : 0;
  // Which world ranks write which kind of file (the same answer on every rank).
  // (Sequence ranks hold the same parameters as data ranks: the replicas' first writes.)
  auto data_index = [&](int r) { return state.groups ? state.groups->plan().mesh().ReplicaIndex(r) : 0; };
  auto writes_model = [&](int r) { return zero == 3 || data_index(r) == 0; };
  auto writes_optimizer = [&](int r) { return zero >= 1 || data_index(r) == 0; };
  if (state.gemini) {  // one rank: whole tensors, copied out of their chunks as written
    RETURN_IF_ERROR(checkpoint::WriteCheckpoint(c.dir, steps_done, state.gemini->ModelViews(),
                                                state.gemini->OptimizerViews(), state_json, c.keep));
    return checkpoint::StepDir(c.dir, steps_done);
  }
  // Pieces gathered for the write (stored_pieces.h), freed when it is done.
  std::deque<std::vector<float>> gathered;
  std::vector<StateTensor> optimizer = state.optimizer->StateTensors(state.stored, gathered);
  const parallel::HeldParams held = OnHost(state, Held(state), gathered);
  const std::string staging = checkpoint::StagingDir(c.dir, steps_done);
  absl::Status written = absl::OkStatus();
  if (rank != 0 && (writes_model(rank) || writes_optimizer(rank))) {
    std::error_code ec;
    fs::create_directories(staging, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(staging, ": ", ec.message()));
    const std::map<std::string, std::string> meta = {{"colossal_step", std::to_string(steps_done)}};
    if (writes_optimizer(rank)) {
      written = checkpoint::WriteSafetensors(checkpoint::ShardFile(staging, "optimizer", rank),
                                             Views(optimizer), meta);
    }
    if (written.ok() && writes_model(rank)) {
      written = checkpoint::WriteSafetensors(checkpoint::ShardFile(staging, "model", rank),
                                             PieceViews(state, held, gathered), meta);
    }
  }
  std::vector<std::string> extras;
  for (int r = 1; r < ranks; ++r) {
    if (writes_optimizer(r)) extras.push_back(checkpoint::ShardFile(staging, "optimizer", r));
    if (writes_model(r)) extras.push_back(checkpoint::ShardFile(staging, "model", r));
  }
  // Every shard is on disk before rank 0 publishes; rank 0 has published before anyone
  // moves on (a later checkpoint or the end of the job).
  {
    absl::Status barrier = WorldBarrier(state);
    if (written.ok()) written = barrier;
  }
  if (rank == 0 && written.ok()) {
    written = checkpoint::WriteCheckpoint(c.dir, steps_done, PieceViews(state, held, gathered),
                                          Views(optimizer), state_json, c.keep, extras);
  }
  {
    absl::Status barrier = WorldBarrier(state);
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
    const graph::Layout& layout = LayoutOf(state, i);
    const std::vector<int64_t>& global = layout.split() ? layout.global : info.shape;
    const std::vector<int64_t>* shape = model.WholeShape(info.name);
    if ((shape != nullptr && *shape != global) ||
        (shape == nullptr && model.CoveredElements(info.name) != graph::NumElements(global))) {
      return absl::InvalidArgumentError(absl::StrCat(
          *latest, ": tensor '", info.name, "' does not match the model's ",
          checkpoint::ShapeString(global), " (its pieces do not tile it, or the shape differs)"));
    }
  }
  if (state.gemini) {
    absl::Status s = state.gemini->FillParams([&](const std::vector<memory::ParamSegment>& segments,
                                                  const std::vector<float*>& data) {
      for (size_t i = 0; i < segments.size(); ++i) {
        const memory::ParamInfo& info = state.params->info(segments[i].param);
        RETURN_IF_ERROR(ReadSegment(model, info.name, info.shape, LayoutOf(state, segments[i].param), 0,
                                    info.numel, data[i]));
      }
      return absl::OkStatus();
    });
    if (s.ok()) {
      ASSIGN_OR_RETURN(std::vector<std::string> files, checkpoint::StepFiles(*latest, "optimizer"));
      ASSIGN_OR_RETURN(auto optimizer, checkpoint::PieceReader::Open(files));
      s = state.gemini->LoadOptimizer(optimizer);
    }
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  }
  const parallel::HeldParams held = state.gemini ? parallel::HeldParams{} : Held(state);
  std::vector<float> staging;  // off the host: each segment read here, then copied over
  for (size_t i = 0; i < held.segments.size(); ++i) {
    const memory::ParamSegment& seg = held.segments[i];
    const memory::ParamInfo& info = state.params->info(seg.param);
    absl::Status s = state.params->place().FillFromHost(held.data[i], seg.length, staging, [&](float* dst) {
      return ReadSegment(model, info.name, info.shape, LayoutOf(state, seg.param), seg.offset, seg.length, dst);
    });
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  }
  if (state.optimizer) {
    ASSIGN_OR_RETURN(std::vector<std::string> optimizer_files, checkpoint::StepFiles(*latest, "optimizer"));
    ASSIGN_OR_RETURN(auto optimizer, checkpoint::PieceReader::Open(optimizer_files));
    absl::Status s = state.optimizer->LoadState(optimizer);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(*latest, ": ", s.message()));
  }
  Restored r;
  r.path = *latest;
  r.step = json["step"].get<int64_t>();
  r.optimizer_step = json["optimizer_step"].get<int64_t>();
  if (json.contains("loss_scale") && json["loss_scale"].is_object()) {
    const nlohmann::json& ls = json["loss_scale"];
    r.loss_scale = ls.value("scale", 0.0);
    r.loss_scale_good_steps = ls.value("good_steps", int64_t{0});
    r.skipped_steps = ls.value("skipped_steps", int64_t{0});
  }
  if (state.gemini) state.gemini->set_step(r.optimizer_step);
  if (state.optimizer) state.optimizer->set_step(r.optimizer_step);
  return std::optional<Restored>(r);
}

}  // namespace colossal::worker
