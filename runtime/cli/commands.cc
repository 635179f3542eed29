// Local commands of the `colossal` CLI.
#include "runtime/cli/commands.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "graph/executor.h"
#include "graph/graph_file.h"
#include "graph/memory_plan.h"
#include "graph/models/gpt.h"
#include "graph/schedule.h"
#include "graph/stage_split.h"
#include "kernels/common/backend_memory.h"
#include "kernels/common/cuda_plugin.h"
#include "kernels/common/dispatch.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/file_io.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/cli/args.h"
#include "runtime/config/job_spec.h"
#include "runtime/data/token_file.h"
#include "runtime/data/tokenizer.h"
#include "runtime/worker/gemini_state.h"
#include "runtime/worker/model.h"
#include "graph/comm_volume.h"
#include "graph/op_registry.h"
#include "parallel/comm/communicator.h"
#include "parallel/data_parallel/data_parallel.h"
#include "parallel/pipeline/runner.h"
#include "parallel/pipeline/schedule.h"
#include "runtime/worker/sampler.h"

namespace colossal::cli {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<config::JobSpec> LoadJob(const std::string& command, const ParsedArgs& args) {
  if (args.positional.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("usage: colossal ", command, " JOB.yaml [--set key.path=value]..."));
  }
  ASSIGN_OR_RETURN(config::JobSpec spec, config::LoadJobSpec(args.positional[0], args.sets));
  return spec;
}

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", b, units[u]);
  return buf;
}

// Bytes per rank of the job's plan, from the rank's part of the graph: parameters,
// gradients and optimizer state (ZeRO divides them over the data group), the activation
// arena, and the bytes each rank sends per optimizer step on each group — the tensor
// groups' collectives read off the graph (graph/comm_volume.h), the data group's from
// the ZeRO stage's reductions of the padded flat buffer. Scalar collectives (loss,
// norms: tens of bytes) are left out.
void PrintPerRank(const config::JobSpec& spec, const worker::Model& model) {
  const config::ParallelSpec& par = spec.parallel;
  const int T = static_cast<int>(par.tensor), D = static_cast<int>(par.data);
  // The parameters' replicas (data x sequence): what ZeRO divides over and gradients
  // are reduced over.
  const int S = static_cast<int>(par.sequence), R = D * S;
  const int64_t zero = par.zero;
  const int64_t accumulation = spec.train.AccumulationSteps(par.data);
  const double flat = static_cast<double>(model.params->flat_numel()) * 4;
  const config::OptimizerType type = spec.train.optimizer.type;
  const double states = type == config::OptimizerType::kAdamW || type == config::OptimizerType::kLamb ? 2 : 1;
  const double param_bytes = zero == 3 ? flat / R : flat;
  const double grad_bytes = zero >= 2 ? flat / R : flat;
  const double state_bytes = states * (zero >= 1 ? flat / R : flat);
  const std::string sequence =
      S > 1 ? absl::StrCat(" x sequence=", S, " (", std::string(config::SequenceModeName(par.sequence_mode)),
                           par.sequence_mode == config::SequenceMode::kRing && par.sequence_zigzag ? ", zigzag" : "",
                           ")")
            : "";
  std::printf("\nplan         data=%d x tensor=%d (%s%s) x pipeline=%lld%s, ZeRO %lld: %lld ranks%s\n", D, T,
              parallel::TensorModeName(par.tensor_mode).c_str(),
              par.tensor_sequence_parallel ? ", sequence parallel" : "", static_cast<long long>(par.pipeline),
              sequence.c_str(), static_cast<long long>(zero), static_cast<long long>(R * T * par.pipeline),
              par.pipeline > 1 ? " (per rank below: the whole model on one stage; each stage's share under pipeline)" : "");
  const graph::MemoryPlan& plan = model.executor->plan();
  std::printf("per rank     parameters %s, gradients %s, optimizer state %s, activations %s (arena",
              Bytes(param_bytes).c_str(), Bytes(grad_bytes).c_str(), Bytes(state_bytes).c_str(),
              Bytes(static_cast<double>(plan.arena_bytes)).c_str());
  if (plan.max_scratch_bytes > 0) {
    std::printf("; the largest op scratch %s", Bytes(static_cast<double>(plan.max_scratch_bytes)).c_str());
  }
  std::printf(")\n");
  // Tensor groups: every communication node of one micro-batch (comm_volume.h), times the
  // micro-batches, and the partial gradients' sum once per step (sequence parallelism:
  // over the tensor group; 2d: down the grid column).
  graph::GroupSizes sizes = worker::TensorParallelOf(par, 0).GroupSizes();
  sizes["sequence"] = S;
  std::map<std::string, int64_t> tensor = graph::CommBytesPerRun(model.graph, sizes);
  for (auto& [group, bytes] : tensor) bytes *= accumulation;
  std::map<std::string, int64_t> partial;
  for (size_t i = 0; i < model.layouts.size(); ++i) {
    for (const std::string& axis : model.layouts[i].partial_grad_axes) {
      partial[axis] += model.params->info(static_cast<int>(i)).numel * 4;
    }
  }
  for (const auto& [axis, bytes] : partial) {
    tensor[axis] += parallel::SentByRing(parallel::Collective::kAllReduce,
                                         zero >= 2 ? bytes / R : bytes, sizes.at(axis));
  }
  // Data group (the replica group under sequence parallelism): the padded flat buffer.
  parallel::DataParallelOptions dp;
  dp.zero_stage = static_cast<int>(zero);
  dp.bucket_bytes = par.bucket_bytes;
  const int64_t padded = R > 1 ? parallel::DataParallel::PaddedNumel(model.params->flat_numel(), R, dp) * 4 : 0;
  using parallel::Collective;
  int64_t data = 0;
  std::string data_note;
  if (R > 1) {
    const int64_t shard = padded / R;
    switch (zero) {
      case 0: data = parallel::SentByRing(Collective::kAllReduce, padded, R); break;
      case 1: data = parallel::SentByRing(Collective::kAllReduce, padded, R) +
                     parallel::SentByRing(Collective::kAllGather, shard, R); break;
      case 2: data = parallel::SentByRing(Collective::kReduceScatter, shard, R) +
                     parallel::SentByRing(Collective::kAllGather, shard, R); break;
      default:
        // Per micro-step: parameters gathered for the forward and again for the backward,
        // gradients reduce-scattered.
        data = accumulation * (parallel::SentByRing(Collective::kReduceScatter, shard, R) +
                               2 * parallel::SentByRing(Collective::kAllGather, shard, R));
        data_note = " (ZeRO 3: about, by parameter group)";
    }
  }
  // Named as metrics.jsonl's comm_bytes names the groups; the replicas' reduction runs on
  // the data group, on the sequence group when data is 1, else on a group of its own.
  const std::string replicas = S == 1 ? "data" : D == 1 ? "sequence" : "replicas";
  std::vector<std::string> groups;
  if (replicas == "sequence") tensor["sequence"] += data;
  for (const auto& [group, bytes] : tensor) {
    const std::string name = group == "tensor" || group == "sequence" ? group : "tensor_" + group;
    groups.push_back(absl::StrCat(name, " ", bytes, " B"));
  }
  if (replicas != "sequence") groups.push_back(absl::StrCat(replicas, " ", data, " B", data_note));
  std::printf("comm/step    %s per rank (%lld micro-batches)%s\n", absl::StrJoin(groups, ", ").c_str(),
              static_cast<long long>(accumulation),
              zero >= 2 && !partial.empty() ? "; partial gradients: about, by shard" : "");
}

// The job's pipeline: its virtual stages (layers, FLOPs), each rank's parameters and
// peak activations (its chunks' arenas times the micro-batches the schedule holds on
// each at once), the bubble (textbook, and replayed at unit action costs) and the
// schedule's timeline per rank as a text chart.
absl::Status PrintPipeline(const config::JobSpec& spec, const graph::Graph& forward) {
  namespace pp = parallel::pipeline;
  const config::ParallelSpec& par = spec.parallel;
  const int P = static_cast<int>(par.pipeline);
  const int64_t M = spec.train.AccumulationSteps(par.data);
  ASSIGN_OR_RETURN(pp::PipelineSchedule schedule,
                   pp::MakeSchedule(par.pipeline_schedule, P, static_cast<int>(M), static_cast<int>(par.pipeline_chunks)));
  std::vector<int> layers_per_stage;
  for (int64_t n : par.pipeline_layers_per_stage) layers_per_stage.push_back(static_cast<int>(n));
  ASSIGN_OR_RETURN(graph::StageSplit split, graph::SplitStages(forward, schedule.virtual_stages(), layers_per_stage));
  std::string layers, flops;
  for (int vs = 0; vs < schedule.virtual_stages(); ++vs) {
    absl::StrAppend(&layers, vs ? ", " : "", split.first_layer[vs + 1] - split.first_layer[vs]);
    absl::StrAppend(&flops, vs ? ", " : "", absl::StrFormat("%.3g", split.flops[vs]));
  }
  std::printf("\npipeline     %d stages x %d chunk(s), schedule %s, %lld micro-batches per step\n", P,
              schedule.chunks, std::string(pp::ScheduleName(schedule.kind)).c_str(), static_cast<long long>(M));
  std::printf("stages       transformer layers per virtual stage [%s]; forward FLOPs per micro-batch [%s]\n",
              layers.c_str(), flops.c_str());
  ASSIGN_OR_RETURN(pp::Timeline timeline, pp::Simulate(schedule));
  std::printf("bubble       %.3f textbook, %.3f replayed at unit costs (F = B = W = 1)\n",
              pp::TheoreticalBubble(schedule), timeline.bubble);
  worker::PipelinePlacement placement;
  placement.schedule = schedule;
  placement.layers_per_stage = layers_per_stage;
  for (int r = 0; r < P; ++r) {
    placement.rank = r;
    ASSIGN_OR_RETURN(auto model, worker::BuildModel(spec, spec.train.micro_batch, {}, /*allocate_params=*/false,
                                                    worker::TensorParallelOf(par, 0), &placement));
    const std::vector<int> peak = pp::PeakHeldPerChunk(schedule, r);
    double activations = 0;
    std::string per_chunk;
    for (int c = 0; c < schedule.chunks; ++c) {
      const graph::Graph& g = *model->chunks[c].graph;
      ASSIGN_OR_RETURN(graph::MemoryPlan plan, graph::PlanMemory(g, pp::ChunkOrder(g, schedule)));
      activations += static_cast<double>(peak[c]) * static_cast<double>(plan.arena_bytes);
      absl::StrAppend(&per_chunk, c ? " + " : "", peak[c], " x ", Bytes(static_cast<double>(plan.arena_bytes)));
    }
    std::printf("rank %-7d parameters %lld (%s fp32), activations %s at the peak (%s micro-batch arenas)\n", r,
                static_cast<long long>(model->params->num_params()), Bytes(model->params->num_params() * 4.0).c_str(),
                Bytes(activations).c_str(), per_chunk.c_str());
  }
  std::printf("\ntimeline     one character per unit (F forward, B backward or its input part, W weight part;\n"
              "             lower case: the second chunk of a rank; '.' idle)\n%s",
              pp::TimelineChart(schedule, timeline).c_str());
  return absl::OkStatus();
}

absl::Status Graph(const ParsedArgs& args) {
  ASSIGN_OR_RETURN(config::JobSpec spec, LoadJob("graph", args));
  if (spec.model.kind == config::ModelSpec::Kind::kGraph) {
    RETURN_IF_ERROR(config::ValidateJobFiles(spec));
  }
  const int64_t batch = spec.train.micro_batch;
  // The part of rank 0 of the job's plan (every rank of a 1d tensor group holds as much).
  const config::ParallelSpec& par = spec.parallel;
  ASSIGN_OR_RETURN(auto model,
                   worker::BuildModel(spec, batch, {}, true, worker::TensorParallelOf(par, 0), nullptr,
                                      worker::SequenceParallelOf(par, 0)));
  if (args.Has("--export")) {
    graph::Graph forward;
    if (model->is_gpt) {
      ASSIGN_OR_RETURN(forward, graph::BuildGpt(model->gpt, batch));
    } else {
      ASSIGN_OR_RETURN(forward, graph::LoadGraphFile(spec.model.graph_path, batch));
    }
    ASSIGN_OR_RETURN(std::string text, graph::ExportGraphText(forward, spec.name));
    const std::string out = args.Get("--export");
    std::ofstream f(out);
    if (!(f << text)) return absl::PermissionDeniedError(absl::StrCat(out, ": cannot write"));
    std::printf("wrote %s\n", out.c_str());
    return absl::OkStatus();
  }
  const graph::Graph& g = model->graph;
  const double tokens = static_cast<double>(batch * model->seq);
  int64_t fwd_nodes = 0;
  for (const graph::Node& n : g.nodes()) fwd_nodes += !n.backward;
  std::printf("model        %s\n", spec.name.c_str());
  std::printf(spec.parallel.tensor > 1 ? "parameters   %lld in %d tensors (%s fp32; rank 0's part)\n"
                                       : "parameters   %lld in %d tensors (%s fp32)\n",
              static_cast<long long>(model->params->num_params()), model->params->size(),
              Bytes(model->params->num_params() * 4.0).c_str());
  std::printf("graph        %lld forward + %lld backward nodes, %zu values\n",
              static_cast<long long>(fwd_nodes), static_cast<long long>(g.nodes().size() - fwd_nodes),
              g.values().size());
  std::printf("micro-batch  %lld sequences x %lld tokens\n", static_cast<long long>(batch),
              static_cast<long long>(model->seq));
  std::printf("FLOPs/token  %.4g (forward + backward, from the graph's ops)\n",
              model->flops_per_micro_batch / tokens);
  if (model->is_gpt) {
    std::printf("             %.4g (6N + 12·L·T·C convention, N = %lld)\n",
                graph::GptTrainingFlops(model->gpt, 1),
                static_cast<long long>(graph::CountGptParams(model->gpt).non_embedding_pos));
  }
  const graph::MemoryPlan& plan = model->executor->plan();
  std::printf("activations  %s per micro-batch (forward peak), arena %s (%s without reuse)\n",
              Bytes(plan.forward_peak_bytes).c_str(), Bytes(plan.arena_bytes).c_str(),
              Bytes(plan.unshared_bytes).c_str());
  PrintPerRank(spec, *model);
  if (spec.memory.gemini()) {
    ASSIGN_OR_RETURN(worker::GeminiPlan gemini,
                     worker::PlanGemini(spec, g, model->executor->schedule(), *model->params,
                                        spec.train.AccumulationSteps(par.data)));
    for (const std::string& line : worker::DescribeGeminiPlan(gemini, spec)) std::printf("%s\n", line.c_str());
    ASSIGN_OR_RETURN(worker::GeminiTraffic t, worker::PredictGeminiTraffic(gemini, spec));
    std::printf("gemini: each step moves %s from NVMe and %s to it; the chunks take at most %s of memory\n",
                Bytes(static_cast<double>(t.nvme_read)).c_str(), Bytes(static_cast<double>(t.nvme_written)).c_str(),
                Bytes(static_cast<double>(t.compute_peak)).c_str());
    std::printf("\n%-6s %-10s %-6s %-16s %s\n", "chunk", "bytes", "used", "placed", "parameters (first use order)");
    const memory::ChunkLayout& l = gemini.layout;
    for (int c = 0; c < l.num_chunks(); ++c) {
      // Placed: parameters + gradients, moments (static placement; auto places none).
      const bool params_placed = gemini.pinned[c * gemini.kinds], moments_placed = gemini.pinned[c * gemini.kinds + 2];
      const std::string placed = params_placed && moments_placed ? "all"
                                 : params_placed                 ? "params, grads"
                                 : moments_placed                ? "moments"
                                                                 : "-";
      const std::vector<int>& ps = l.params(c);
      std::string names = model->params->info(ps.front()).name;
      if (ps.size() > 1) names += absl::StrCat(" .. ", model->params->info(ps.back()).name, " (", ps.size(), ")");
      std::printf("%-6d %-10s %-6s %-16s %s\n", c, Bytes(l.capacity(c) * 4.0).c_str(),
                  absl::StrCat(l.used(c) * 100 / l.capacity(c), "%").c_str(), placed.c_str(), names.c_str());
    }
  }
  if (par.pipeline > 1) {
    graph::Graph forward;
    if (model->is_gpt) {
      ASSIGN_OR_RETURN(forward, graph::BuildGpt(model->gpt, batch, worker::TensorParallelOf(par, 0)));
    } else {
      ASSIGN_OR_RETURN(forward, graph::LoadGraphFile(spec.model.graph_path, batch));
    }
    RETURN_IF_ERROR(PrintPipeline(spec, forward));
  }
  std::printf("\n%-34s %-18s %s\n", "parameter", "shape", "elements");
  for (const memory::ParamInfo& info : model->params->infos()) {
    std::printf("%-34s %-18s %lld\n", info.name.c_str(), graph::ShapeString(info.shape).c_str(),
                static_cast<long long>(info.numel));
  }
  return absl::OkStatus();
}

absl::Status Tokenize(const ParsedArgs& args) {
  if (args.positional.size() != 2) {
    return absl::InvalidArgumentError("usage: colossal tokenize IN.txt OUT.tokens [--tokenizer bytes]");
  }
  ASSIGN_OR_RETURN(auto tokenizer, data::MakeTokenizer(args.Get("--tokenizer", "bytes")));
  RETURN_IF_ERROR(data::TokenizeFile(args.positional[0], args.positional[1], *tokenizer));
  std::printf("wrote %s\n", args.positional[1].c_str());
  return absl::OkStatus();
}

// The step directory named by `path`: itself, or the newest one in a checkpoint directory.
absl::StatusOr<std::string> StepDirOf(const std::string& path) {
  if (fs::exists(fs::path(path) / checkpoint::kStateFile)) return path;
  ASSIGN_OR_RETURN(auto latest, checkpoint::LatestCheckpoint(path));
  if (!latest) return absl::NotFoundError(absl::StrCat(path, ": no checkpoint here"));
  return *latest;
}

// The state.json of step directory `dir`, parsed; an error names the file when it cannot
// be read or is not JSON.
absl::StatusOr<nlohmann::json> ReadStateJson(const std::string& dir) {
  const std::string path = (fs::path(dir) / checkpoint::kStateFile).string();
  ASSIGN_OR_RETURN(std::string text, checkpoint::ReadFile(path));
  nlohmann::json state = nlohmann::json::parse(text, nullptr, false);
  if (state.is_discarded()) return absl::DataLossError(absl::StrCat(path, ": not JSON"));
  return state;
}

absl::Status Generate(const ParsedArgs& args) {
  if (args.positional.size() != 1) {
    return absl::InvalidArgumentError(
        "usage: colossal generate CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T] "
        "[--top-k K] [--seed S]");
  }
  ASSIGN_OR_RETURN(std::string dir, StepDirOf(args.positional[0]));
  ASSIGN_OR_RETURN(nlohmann::json state, ReadStateJson(dir));
  if (!state.contains("model") || state["model"].value("type", "") != "gpt") {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/state.json: no GPT model description (generate supports GPT models)"));
  }
  const nlohmann::json& m = state["model"];
  graph::GptConfig cfg{m.value("n_layer", 0), m.value("n_head", 0), m.value("d_model", 0),
                       m.value("seq_len", 0), m.value("vocab", 0)};
  ASSIGN_OR_RETURN(graph::Graph g, graph::BuildGpt(cfg, 1));
  memory::ParamStore params(graph::ParamSpecs(g));
  RETURN_IF_ERROR(worker::LoadParams(params, dir));
  ASSIGN_OR_RETURN(auto tokenizer, data::MakeTokenizer(state.value("tokenizer", "bytes")));
  worker::SampleOptions o;
  auto parse_int = [&](const char* flag, auto* out) -> absl::Status {
    if (args.Has(flag) && !absl::SimpleAtoi(args.Get(flag), out)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": not an integer: ", args.Get(flag)));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(parse_int("--tokens", &o.tokens));
  RETURN_IF_ERROR(parse_int("--top-k", &o.top_k));
  RETURN_IF_ERROR(parse_int("--seed", &o.seed));
  if (args.Has("--temperature") && (!absl::SimpleAtod(args.Get("--temperature"), &o.temperature) ||
                                    !(o.temperature > 0))) {
    return absl::InvalidArgumentError("--temperature must be a number > 0");
  }
  if (o.tokens < 0 || o.top_k < 0) return absl::InvalidArgumentError("--tokens and --top-k must be >= 0");
  o.token_limit = tokenizer->vocab_size();
  ASSIGN_OR_RETURN(std::unique_ptr<worker::GptSampler> sampler, worker::GptSampler::Create(cfg, &params));
  const std::string prompt = args.Get("--prompt", "\n");
  std::vector<int32_t> out = sampler->Generate(tokenizer->Encode(prompt), o);
  std::printf("%s%s\n", prompt.c_str(), tokenizer->Decode(out).c_str());
  return absl::OkStatus();
}

absl::Status Export(const ParsedArgs& args) {
  if (args.positional.size() != 2) {
    return absl::InvalidArgumentError("usage: colossal export CHECKPOINT OUT.safetensors");
  }
  ASSIGN_OR_RETURN(std::string dir, StepDirOf(args.positional[0]));
  ASSIGN_OR_RETURN(nlohmann::json state, ReadStateJson(dir));
  if (!state.contains("param_shapes") || !state["param_shapes"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/state.json: no param_shapes"));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> files, checkpoint::StepFiles(dir, "model"));
  ASSIGN_OR_RETURN(checkpoint::PieceReader reader, checkpoint::PieceReader::Open(files));
  std::vector<std::vector<float>> data;
  std::vector<checkpoint::TensorView> views;
  for (const auto& [name, shape_json] : state["param_shapes"].items()) {
    std::vector<int64_t> shape = shape_json.get<std::vector<int64_t>>();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    data.emplace_back(n);
    absl::Status s = reader.ReadF32(name, 0, n, data.back().data());
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(dir, ": ", s.message()));
    views.push_back({name, "F32", shape, nullptr});
  }
  for (size_t i = 0; i < views.size(); ++i) views[i].data = data[i].data();
  RETURN_IF_ERROR(checkpoint::WriteSafetensors(args.positional[1], views, {{"format", "pt"}}));
  std::printf("wrote %s (%zu tensors from %s)\n", args.positional[1].c_str(), views.size(), dir.c_str());
  return absl::OkStatus();
}

}  // namespace

int ExportCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("export", argv, {}, {});
  if (!args.ok()) return ReportError("export", args.status());
  absl::Status s = Export(*args);
  return s.ok() ? 0 : ReportError("export", s);
}

int GraphCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("graph", argv, {"--export"}, {});
  if (!args.ok()) return ReportError("graph", args.status());
  absl::Status s = Graph(*args);
  return s.ok() ? 0 : ReportError("graph", s);
}

int TokenizeCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("tokenize", argv, {"--tokenizer"}, {});
  if (!args.ok()) return ReportError("tokenize", args.status());
  absl::Status s = Tokenize(*args);
  return s.ok() ? 0 : ReportError("tokenize", s);
}

int GenerateCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("generate", argv, {"--prompt", "--tokens", "--temperature", "--top-k", "--seed"}, {});
  if (!args.ok()) return ReportError("generate", args.status());
  absl::Status s = Generate(*args);
  return s.ok() ? 0 : ReportError("generate", s);
}

int ValidateCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("validate", argv, {}, {});
  if (!args.ok()) return ReportError("validate", args.status());
  auto spec = LoadJob("validate", *args);
  if (!spec.ok()) return ReportError("validate", spec.status());
  absl::Status files = config::ValidateJobFiles(*spec);
  if (!files.ok()) return ReportError("validate", files);
  std::printf("%s", config::ToYaml(*spec).c_str());
  return 0;
}

int KernelsCommand(const std::vector<std::string>&) {
  // The CUDA twins live in the plugin: load it so they are listed, and say where from.
  absl::StatusOr<std::string> plugin = kernels::LoadCudaPlugin();
  if (plugin.ok()) {
    std::printf("cuda backend: %s (%s)\n", plugin->c_str(),
                kernels::FindBackendMemory(kernels::Backend::kCuda) != nullptr ? "a device is present"
                                                                                : "no CUDA device in this process");
  } else {
    std::printf("cuda backend: not loaded: %s\n", std::string(plugin.status().message()).c_str());
  }
  std::printf("%-28s %-10s %-10s %-10s\n", "kernel", "ref", "cpu", "cuda");
  for (const kernels::DispatchInfo& t : kernels::ListDispatchTables()) {
    auto cell = [&](kernels::Backend b) {
      std::string s;
      for (int d = 0; d < 4; ++d) {
        if (t.registered[static_cast<int>(b)][d]) {
          s += (s.empty() ? "" : ",") + std::string(kernels::DTypeName(static_cast<kernels::DType>(d)));
        }
      }
      return s.empty() ? std::string("-") : s;
    };
    std::printf("%-28s %-10s %-10s %-10s\n", t.name.c_str(), cell(kernels::Backend::kRef).c_str(),
                cell(kernels::Backend::kCpu).c_str(), cell(kernels::Backend::kCuda).c_str());
  }
  return 0;
}

}  // namespace colossal::cli
