// Model construction, initialisation and loading.
#include "runtime/worker/model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/graph_file.h"
#include "graph/op_registry.h"
#include "graph/precision.h"
#include "graph/recompute.h"
#include "runtime/base/rng.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"

namespace colossal::worker {

double GraphFlops(const graph::Graph& g) {
  double total = 0;
  for (const graph::Node& n : g.nodes()) {
    if (n.recompute_of < 0) total += graph::NodeFlops(g, n);  // model FLOPs: not the recompute
  }
  return total;
}

std::vector<memory::ParamStore::Spec> GlobalParamSpecs(const graph::Graph& graph) {
  std::vector<memory::ParamStore::Spec> specs;
  for (int p : graph.params()) {
    const graph::Value& v = graph.value(p);
    specs.push_back({v.name, v.layout.split() ? v.layout.global : v.shape});
  }
  return specs;
}

absl::StatusOr<std::unique_ptr<Model>> BuildModel(const config::JobSpec& spec, int64_t batch,
                                                   const std::function<int64_t(int64_t)>& flat_numel,
                                                   bool allocate_params,
                                                   const graph::GptTensorParallel& tp,
                                                   const PipelinePlacement* pipeline,
                                                   const graph::GptSequenceParallel& sp,
                                                   const memory::Place* place) {
  auto model = std::make_unique<Model>();
  model->batch = batch;
  model->tensor_parallel = tp.size;
  if (spec.model.kind == config::ModelSpec::Kind::kGpt) {
    const config::GptModelSpec& m = spec.model.gpt;
    model->gpt = {m.n_layer, m.n_head, m.d_model, m.seq_len, m.vocab};
    model->gpt.block_attention = m.BlockAttention();
    model->is_gpt = true;
    ASSIGN_OR_RETURN(model->graph, graph::BuildGpt(model->gpt, batch, tp, graph::GptPass::kTrain, sp));
  } else {
    if (tp.size != 1 || sp.size != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.model.graph_path, ": tensor and sequence parallelism need a GPT model"));
    }
    ASSIGN_OR_RETURN(model->graph, graph::LoadGraphFile(spec.model.graph_path, batch));
  }
  graph::Graph& g = model->graph;
  // Mixed precision: the GEMMs compute in bf16 / fp16 (graph/precision.h), before the
  // backward and the pipeline's split so every chunk's GEMMs carry it.
  const config::Precision precision = spec.train.precision;
  if (precision != config::Precision::kFp32) {
    RETURN_IF_ERROR(graph::SetComputePrecision(
                        g, precision == config::Precision::kBf16 ? graph::DType::kBF16 : graph::DType::kF16)
                        .status());
  }
  model->ids = g.Find("ids");
  model->targets = g.Find("targets");
  model->positions = g.Find("positions");
  const std::string where =
      spec.model.kind == config::ModelSpec::Kind::kGraph ? spec.model.graph_path : "model";
  for (auto [id, name] : {std::pair{model->ids, "ids"}, std::pair{model->targets, "targets"}}) {
    if (id < 0 || g.value(id).kind != graph::ValueKind::kInput ||
        g.value(id).dtype != graph::DType::kI32 || g.value(id).shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the graph needs an int32 input '", name, "' of shape [batch, seq]"));
    }
  }
  model->seq = g.value(model->ids).shape[1];
  model->window = model->seq * sp.size;
  model->sequence = sp.Layout(model->window);
  if (g.value(model->targets).shape != g.value(model->ids).shape) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": 'targets' must have the shape of 'ids'"));
  }
  if (spec.model.kind == config::ModelSpec::Kind::kGpt) {
    model->vocab = spec.model.gpt.vocab;
  } else {
    // The vocabulary is the row count of the table "ids" indexes.
    for (const graph::Node& n : g.nodes()) {
      if (n.op == "embedding" && n.inputs[0] == model->ids) model->vocab = g.value(n.inputs[1]).shape[0];
    }
    if (model->vocab == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": 'ids' must feed an embedding"));
    }
  }
  model->model_specs = GlobalParamSpecs(g);
  // Activation checkpointing: recompute clones of the chosen transformer layers.
  int num_layers = 0;  // the transformer layers, 1..num_layers
  for (const graph::Node& n : g.nodes()) num_layers = std::max(num_layers, n.layer - 1);
  const config::MemorySpec& mem = spec.memory;
  if (mem.activation_checkpointing && num_layers < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": memory.activation_checkpointing needs the graph's transformer layers marked (node layers 1..L)"));
  }
  auto recompute = [&](graph::Graph& graph) -> absl::Status {
    if (!mem.activation_checkpointing) return absl::OkStatus();
    return graph::AddRecompute(graph, graph::RecomputeLayers(graph, num_layers, static_cast<int>(mem.checkpoint_every),
                                                             static_cast<int>(mem.checkpoint_layers)));
  };
  const graph::Graph* loss_graph = &g;
  if (pipeline != nullptr && pipeline->schedule.stages > 1) {
    model->pipelined = true;
    absl::StatusOr<std::vector<parallel::pipeline::Chunk>> chunks =
        parallel::pipeline::BuildChunks(g, pipeline->schedule, pipeline->rank, pipeline->layers_per_stage, recompute);
    if (!chunks.ok()) return absl::Status(chunks.status().code(), absl::StrCat(where, ": ", chunks.status().message()));
    ASSIGN_OR_RETURN(model->shared,
                     parallel::pipeline::SharedParams(g, pipeline->schedule, pipeline->layers_per_stage));
    model->chunks = std::move(*chunks);
    g = *model->chunks[0].graph;  // the rank's parameters, in the store's order
    for (size_t c = 0; c < model->chunks.size(); ++c) {
      const graph::Graph& cg = *model->chunks[c].graph;
      model->flops_per_micro_batch += GraphFlops(cg);
      if (cg.loss() >= 0) {
        model->last_chunk = static_cast<int>(c);
        loss_graph = &cg;
      }
    }
    model->ids = model->targets = model->positions = -1;
  } else {
    RETURN_IF_ERROR(graph::BuildBackward(g));
    RETURN_IF_ERROR(recompute(g));
    model->flops_per_micro_batch = GraphFlops(g);
  }
  // (Chunk 0's graph, when this rank holds no loss, has none: -1.)
  model->loss = loss_graph->loss();
  model->loss_grad = loss_graph->loss_seed();
  model->token_rows = batch;
  if (tp.two_d && tp.size > 1) {  // the logits' token block k·q + j of depth·q (gpt.h)
    const int64_t q = tp.grid_q();
    model->token_rows = batch / (q * tp.depth);
    model->token_row_start = ((tp.rank / (q * q)) * q + tp.rank % q) * model->token_rows;
  }
  if (tp.three_d && tp.size > 1) {  // the loss in the odd form: token block a·q + c of q²
    const int64_t q = tp.grid_q();
    model->token_rows = batch / (q * q);
    model->token_row_start = (tp.IndexOf("depth", tp.rank) * q + tp.IndexOf("col", tp.rank)) *
                             model->token_rows;
  }
  model->tp = tp;
  if (model->loss >= 0) {
    const graph::Graph& lg = *loss_graph;
    if (const int producer = lg.value(model->loss).producer; producer >= 0 && lg.node(producer).op == "mean") {
      const int input = lg.node(producer).inputs[0];
      if (lg.value(input).numel() == model->token_rows * model->seq) model->token_loss = input;
    }
  }

  const std::vector<memory::ParamStore::Spec> specs = graph::ParamSpecs(g);
  for (int p : g.params()) {
    model->layouts.push_back(g.value(p).layout);
    bool owned = true;
    for (const parallel::pipeline::SharedParam& sp : model->shared) {
      if (sp.name == g.value(p).name) owned = sp.ranks.front() == pipeline->rank;
    }
    model->stage_owned.push_back(owned);
  }
  const int64_t flat = memory::ParamStore::FlatNumel(specs);
  const memory::Place where_params = place != nullptr ? *place : memory::Place::Host();
  ASSIGN_OR_RETURN(model->params, memory::ParamStore::Make(specs, flat_numel ? flat_numel(flat) : flat,
                                                           allocate_params, where_params));
  if (model->pipelined) return model;  // the trainer's Runner makes the executors
  // Collectives that can overlap (tensor parallelism's input-gradient all-reduces and
  // sequence parallelism's gathers and scatters) run while the next nodes compute.
  ASSIGN_OR_RETURN(model->executor,
                   graph::Executor::Create(&g, model->params.get(),
                                           graph::OverlapCommunication(g, graph::DefaultSchedule(g)),
                                           where_params.stream()));
  if (model->positions >= 0) {
    // Staged on the host and copied in: the executor's memory may be a device's.
    std::vector<int32_t> positions(static_cast<size_t>(g.value(model->positions).numel()));
    parallel::FillPositions(positions.data(), batch, model->sequence);
    RETURN_IF_ERROR(model->executor->WriteValue<int32_t>(model->positions, positions));
  }
  return model;
}

graph::GptTensorParallel TensorParallelOf(const config::ParallelSpec& p, int64_t rank) {
  graph::GptTensorParallel tp;
  tp.size = p.tensor;
  tp.rank = rank;
  tp.sequence_parallel = p.tensor_sequence_parallel;
  tp.two_d = p.tensor_mode == config::TensorMode::k2d || p.tensor_mode == config::TensorMode::k2p5d;
  tp.depth = p.tensor_mode == config::TensorMode::k2p5d ? p.tensor_depth : 1;
  tp.three_d = p.tensor_mode == config::TensorMode::k3d;
  return tp;
}

graph::GptSequenceParallel SequenceParallelOf(const config::ParallelSpec& p, int64_t rank) {
  graph::GptSequenceParallel sp;
  sp.size = p.sequence;
  sp.rank = rank;
  sp.all_to_all = p.sequence_mode == config::SequenceMode::kAllToAll;
  sp.zigzag = p.sequence_zigzag;
  return sp;
}

void InitParams(const Model& model, const std::vector<memory::ParamSegment>& segments,
                const std::vector<float*>& data, uint64_t seed) {
  const graph::Graph& g = model.graph;
  const memory::Place& place = model.params->place();
  std::vector<float> values, staging;
  int generated = -1;  // parameter whose values are in `values`
  for (size_t i = 0; i < segments.size(); ++i) {
    const memory::ParamSegment& s = segments[i];
    const graph::Value& v = g.value(g.params()[s.param]);
    if (generated != s.param) {
      values.resize(v.layout.split() ? graph::NumElements(v.layout.global) : v.numel());
      if (v.init.kind == graph::ParamInit::Kind::kConstant) {
        std::fill(values.begin(), values.end(), static_cast<float>(v.init.value));
      } else {
        base::Xoshiro256StarStar rng(base::StreamSeed(seed, base::HashName(v.name)));
        for (float& x : values) x = static_cast<float>(rng.Normal() * v.init.value);
      }
      generated = s.param;
    }
    // Off the host the segment is assembled in `staging` and copied over in one go.
    (void)place.FillFromHost(data[i], s.length, staging, [&](float* dst) {
      for (const graph::ElementRun& r : graph::GlobalRuns(v.shape, v.layout, s.offset, s.length)) {
        std::copy(values.begin() + r.global, values.begin() + r.global + r.count, dst + (r.local - s.offset));
      }
      return absl::OkStatus();
    });
  }
}

void TakeHeld(const Model& model, const memory::ParamStore& whole,
              const std::vector<memory::ParamSegment>& segments, const std::vector<float*>& data) {
  const graph::Graph& g = model.graph;
  const memory::Place& place = model.params->place();  // where `data` is; `whole` is on the host
  std::vector<float> staging;
  for (size_t i = 0; i < segments.size(); ++i) {
    const memory::ParamSegment& s = segments[i];
    const graph::Value& v = g.value(g.params()[s.param]);
    const float* src = whole.data(whole.Find(v.name));  // `whole` may hold more parameters
    (void)place.FillFromHost(data[i], s.length, staging, [&](float* dst) {
      for (const graph::ElementRun& r : graph::GlobalRuns(v.shape, v.layout, s.offset, s.length)) {
        std::copy(src + r.global, src + r.global + r.count, dst + (r.local - s.offset));
      }
      return absl::OkStatus();
    });
  }
}

absl::Status GatherWhole(const Model& model, const memory::ParamStore& local,
                         parallel::Communicator* tensor, memory::ParamStore& whole) {
  const graph::Graph& g = model.graph;
  const memory::Place& place = local.place();  // `whole` and the gathered copy are on the host
  std::vector<float> all;
  for (int i = 0; i < local.size(); ++i) {
    const graph::Value& v = g.value(g.params()[i]);
    const int64_t n = v.numel();
    if (!v.layout.split() || tensor == nullptr) {
      place.CopyToHost(whole.data(i), local.data(i), n * static_cast<int64_t>(sizeof(float)));
      continue;
    }
    all.resize(n * tensor->size());
    if (place.on_host()) {
      RETURN_IF_ERROR(tensor->AllGather(local.data(i), all.data(), n, graph::DType::kF32)->Wait());
    } else {
      // The communicator works in the store's memory: gather on the device, then copy.
      const int64_t bytes = static_cast<int64_t>(all.size() * sizeof(float));
      ASSIGN_OR_RETURN(memory::Buffer gathered, place.Allocate(bytes, memory::Purpose::kCommunication));
      RETURN_IF_ERROR(tensor->AllGather(local.data(i), gathered.as<float>(), n, graph::DType::kF32)->Wait());
      place.CopyToHost(all.data(), gathered.data(), bytes);
    }
    for (int r = 0; r < tensor->size(); ++r) {
      graph::Layout at = v.layout;  // member r's part
      for (graph::DimSplit& d : at.splits) {
        d.part = model.tp.IndexOf(d.axis, r) * d.minor_parts +
                 (d.minor_axis.empty() ? 0 : model.tp.IndexOf(d.minor_axis, r));
      }
      for (const graph::ElementRun& run : graph::GlobalRuns(v.shape, at, 0, n)) {
        std::copy(all.begin() + r * n + run.local, all.begin() + r * n + run.local + run.count,
                  whole.data(i) + run.global);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GatherStages(const memory::ParamStore& local, const std::vector<bool>& owned,
                          parallel::Communicator* pipe, memory::ParamStore& all) {
  const memory::Place& place = local.place();
  if (!place.on_host()) {
    // The communicator works in the store's memory: sum a device copy of `all`'s layout
    // (zero-filled by the allocator), then bring it to the host.
    const int64_t bytes = all.flat_numel() * static_cast<int64_t>(sizeof(float));
    ASSIGN_OR_RETURN(memory::Buffer sum, place.Allocate(bytes, memory::Purpose::kCommunication));
    for (int i = 0; i < local.size(); ++i) {
      if (!owned[i]) continue;
      const memory::ParamInfo& to = all.info(all.Find(local.info(i).name));
      place.Copy(sum.as<float>() + to.offset, local.data(i), local.info(i).numel * static_cast<int64_t>(sizeof(float)));
    }
    RETURN_IF_ERROR(pipe->AllReduce(sum.as<float>(), all.flat_numel(), graph::DType::kF32)->Wait());
    place.CopyToHost(all.flat_data(), sum.data(), bytes);
    return absl::OkStatus();
  }
  std::fill(all.flat_data(), all.flat_data() + all.flat_numel(), 0.0f);
  for (int i = 0; i < local.size(); ++i) {
    if (!owned[i]) continue;
    const int to = all.Find(local.info(i).name);
    std::copy(local.data(i), local.data(i) + local.info(i).numel, all.data(to));
  }
  return pipe->AllReduce(all.flat_data(), all.flat_numel(), graph::DType::kF32)->Wait();
}

void InitParams(Model& model, uint64_t seed) {
  const std::vector<memory::ParamSegment> whole = model.params->WholeTensors();
  InitParams(model, whole, model.params->SegmentData(whole), seed);
}

namespace {

// Every parameter whole from the model files of checkpoint step `step_dir`: whole
// tensors or pieces in any mix (a sharded or tensor-parallel checkpoint).
absl::Status LoadFromStep(memory::ParamStore& params, const std::string& step_dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, checkpoint::StepFiles(step_dir, "model"));
  ASSIGN_OR_RETURN(checkpoint::PieceReader reader, checkpoint::PieceReader::Open(files));
  for (int i = 0; i < params.size(); ++i) {
    const memory::ParamInfo& info = params.info(i);
    const std::vector<int64_t>* shape = reader.WholeShape(info.name);
    if ((shape != nullptr && *shape != info.shape) ||
        (shape == nullptr && reader.CoveredElements(info.name) != info.numel)) {
      return absl::InvalidArgumentError(absl::StrCat(
          step_dir, ": tensor '", info.name, "' does not match the model's ",
          graph::ShapeString(info.shape), " (missing, misshapen, or its pieces do not tile it)"));
    }
    absl::Status s = reader.ReadF32(info.name, 0, info.numel, params.data(i));
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(step_dir, ": ", s.message()));
  }
  for (const std::string& name : reader.Names()) {
    if (params.Find(name) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(step_dir, ": tensor '", name, "' is not a parameter of this model"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadParams(memory::ParamStore& params, const std::string& path) {
  if (!params.place().on_host()) {
    // Loaded on the host with the same layout, then copied over whole.
    memory::ParamStore host(params.specs(), params.flat_numel());
    RETURN_IF_ERROR(LoadParams(host, path));
    params.place().CopyFromHost(params.flat_data(), host.flat_data(),
                                params.flat_numel() * static_cast<int64_t>(sizeof(float)));
    return absl::OkStatus();
  }
  namespace fs = std::filesystem;
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / checkpoint::kStateFile)) return LoadFromStep(params, path);
    ASSIGN_OR_RETURN(auto latest, checkpoint::LatestCheckpoint(path));
    if (!latest) {
      return absl::NotFoundError(absl::StrCat(path, ": no checkpoint in this directory"));
    }
    return LoadFromStep(params, *latest);
  }
  ASSIGN_OR_RETURN(auto st, checkpoint::SafetensorsFile::Open(file));
  // Hugging Face files name GPT2LMHeadModel tensors "transformer.<name>", and carry the
  // attention mask buffers and the (tied) lm_head; those are recognised and skipped.
  std::map<std::string, const checkpoint::TensorInfo*> by_name;
  for (const checkpoint::TensorInfo& t : st.tensors()) {
    std::string name = t.name;
    if (name.rfind("transformer.", 0) == 0) name = name.substr(12);
    by_name[name] = &t;
  }
  for (int i = 0; i < params.size(); ++i) {
    const memory::ParamInfo& info = params.info(i);
    auto it = by_name.find(info.name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", info.name, "' is missing (the model needs ",
                       graph::ShapeString(info.shape), ")"));
    }
    const checkpoint::TensorInfo& t = *it->second;
    // A position table longer than the model's context (GPT-2's 1024 rows for a shorter
    // seq_len): its first rows are the positions the model uses.
    if (info.name == "wpe.weight" && t.dtype == "F32" && t.shape.size() == 2 &&
        info.shape.size() == 2 && t.shape[1] == info.shape[1] && t.shape[0] > info.shape[0]) {
      std::span<const uint8_t> bytes = st.Bytes(t);
      std::memcpy(params.data(i), bytes.data(), info.numel * sizeof(float));
      continue;
    }
    RETURN_IF_ERROR(st.CopyF32(t.name, info.shape, {params.data(i), static_cast<size_t>(info.numel)}));
  }
  for (const auto& [name, t] : by_name) {
    if (params.Find(name) >= 0) continue;
    const bool hf_buffer = name == "lm_head.weight" || absl::EndsWith(name, ".attn.bias") ||
                           absl::EndsWith(name, ".attn.masked_bias");
    if (!hf_buffer) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", t->name, "' is not a parameter of this model"));
    }
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
