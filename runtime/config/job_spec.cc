// ParseJobSpec and friends: YAML text -> overrides -> typed JobSpec -> defaults ->
// validation (validate.cc). Owns the schema: which keys exist at each level, their
// types and defaults. Canonical output lives in to_yaml.cc.
#include "runtime/config/job_spec.h"

#include <algorithm>
#include <cctype>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/base/status_macros.h"
#include "runtime/config/enum_names.h"
#include "runtime/config/overrides.h"
#include "runtime/config/validate.h"
#include "runtime/config/yaml_reader.h"
#include "runtime/data/tokenizer.h"

namespace colossal::config {
namespace {

using internal::MapReader;
using internal::YamlContext;

constexpr absl::string_view kGptShape =
    "an integer >= 1 (model: {type: gpt, n_layer, n_head, d_model, seq_len, vocab} or "
    "model: {graph: FILE})";

absl::Status ParseModel(const MapReader& root, JobSpec& spec) {
  if (!root.Has("model")) {
    return root.Missing("model",
                        "{type: gpt, n_layer, n_head, d_model, seq_len, vocab} or {graph: FILE}");
  }
  ASSIGN_OR_RETURN(MapReader m, root.Map("model", "a map: {type: gpt, ...} or {graph: FILE}"));
  ModelSpec& model = spec.model;
  if (m.Has("graph")) {
    for (const char* key : {"type", "n_layer", "n_head", "d_model", "seq_len", "vocab", "attention"}) {
      if (m.Has(key)) {
        return m.ErrorAt(key, "not used with model.graph (the graph file gives the model); "
                              "remove it, or remove model.graph");
      }
    }
    RETURN_IF_ERROR(m.CheckKeys({"graph", "init_from"}));
    model.kind = ModelSpec::Kind::kGraph;
    RETURN_IF_ERROR(m.String("graph", &model.graph_path));
  } else {
    RETURN_IF_ERROR(
        m.CheckKeys({"type", "n_layer", "n_head", "d_model", "seq_len", "vocab", "attention", "init_from"}));
    model.kind = ModelSpec::Kind::kGpt;
    std::string type = "gpt";
    RETURN_IF_ERROR(m.Enum<std::string>("type", {{"gpt", "gpt"}}, &type));
    GptModelSpec& gpt = model.gpt;
    for (auto [key, field] : {std::pair{"n_layer", &gpt.n_layer}, std::pair{"n_head", &gpt.n_head},
                              std::pair{"d_model", &gpt.d_model}, std::pair{"seq_len", &gpt.seq_len},
                              std::pair{"vocab", &gpt.vocab}}) {
      if (!m.Has(key)) return m.Missing(key, kGptShape);
      RETURN_IF_ERROR(m.Int(key, field));
    }
    RETURN_IF_ERROR(m.Enum<std::string>("attention", {{"auto", "auto"}, {"fused", "fused"}, {"block", "block"}},
                                        &gpt.attention));
  }
  return m.String("init_from", &model.init_from);
}

absl::Status ParseData(const MapReader& root, JobSpec& spec) {
  ASSIGN_OR_RETURN(MapReader d, root.Map("data", "a map {train: FILE, tokenizer, val_fraction}"));
  RETURN_IF_ERROR(d.CheckKeys({"train", "tokenizer", "val_fraction", "shuffle"}));
  if (!d.Has("train")) return d.Missing("train", "the path of the training text or token file");
  RETURN_IF_ERROR(d.String("train", &spec.data.train));
  internal::EnumNames<std::string> tokenizers;
  for (const std::string& name : data::KnownTokenizers()) tokenizers.emplace_back(name, name);
  RETURN_IF_ERROR(d.Enum("tokenizer", tokenizers, &spec.data.tokenizer));
  RETURN_IF_ERROR(d.Double("val_fraction", &spec.data.val_fraction));
  return d.Bool("shuffle", &spec.data.shuffle);
}

absl::Status ParseBetas(const MapReader& o, YamlContext& ctx, OptimizerSpec& opt) {
  if (!o.Has("betas")) return absl::OkStatus();
  YAML::Node betas = o.Get("betas");
  if (!betas.IsSequence() || betas.size() != 2) {
    return o.ErrorAt("betas", absl::StrCat("expected a list of two numbers [beta1, beta2], got ",
                                           betas.IsSequence()
                                               ? absl::StrCat("a list of ", betas.size())
                                               : internal::Describe(betas)));
  }
  double* fields[2] = {&opt.beta1, &opt.beta2};
  for (size_t i = 0; i < 2; ++i) {
    std::string path = absl::StrCat(o.Path("betas"), "[", i, "]");
    std::string where = ctx.Where(betas[i], path);
    absl::StatusOr<double> value = internal::ScalarToDouble(betas[i]);
    if (!value.ok()) return ctx.Error(where, path, value.status().message());
    ctx.Note(path, where);
    *fields[i] = *value;
  }
  return absl::OkStatus();
}

absl::Status ParseOptimizer(const MapReader& t, YamlContext& ctx, OptimizerSpec& opt) {
  ASSIGN_OR_RETURN(MapReader o, t.Map("optimizer", "a map {type, lr, betas, ...}"));
  RETURN_IF_ERROR(o.CheckKeys({"type", "lr", "betas", "eps", "weight_decay", "no_decay",
                               "trust_clip", "momentum", "trust_coef", "nesterov"}));
  RETURN_IF_ERROR(o.Enum("type", internal::kOptimizerNames, &opt.type));
  opt.eps = opt.type == OptimizerType::kLamb ? 1e-6 : 1e-8;
  RETURN_IF_ERROR(o.Double("lr", &opt.lr));
  RETURN_IF_ERROR(ParseBetas(o, ctx, opt));
  RETURN_IF_ERROR(o.Double("eps", &opt.eps));
  RETURN_IF_ERROR(o.Double("weight_decay", &opt.weight_decay));
  RETURN_IF_ERROR(o.StringList("no_decay", &opt.no_decay));
  RETURN_IF_ERROR(o.Double("trust_clip", &opt.trust_clip));
  RETURN_IF_ERROR(o.Double("momentum", &opt.momentum));
  RETURN_IF_ERROR(o.Double("trust_coef", &opt.trust_coef));
  return o.Bool("nesterov", &opt.nesterov);
}

absl::Status ParseTrain(const MapReader& root, YamlContext& ctx, JobSpec& spec) {
  ASSIGN_OR_RETURN(MapReader t, root.Map("train", "a map {steps, global_batch, ...}"));
  RETURN_IF_ERROR(t.CheckKeys({"steps", "global_batch", "micro_batch", "optimizer",
                               "lr_schedule", "grad_clip", "precision", "loss_scale", "seed", "max_restarts",
                               "checkpoint", "val_every", "val_batches", "log_every",
                               "resume"}));
  TrainSpec& train = spec.train;
  if (!t.Has("steps")) return t.Missing("steps", "the number of optimizer steps, >= 1");
  RETURN_IF_ERROR(t.Int("steps", &train.steps));
  if (!t.Has("global_batch")) {
    return t.Missing("global_batch", "the sequences per optimizer step over all ranks, >= 1");
  }
  RETURN_IF_ERROR(t.Int("global_batch", &train.global_batch));
  RETURN_IF_ERROR(t.Int("micro_batch", &train.micro_batch));
  RETURN_IF_ERROR(ParseOptimizer(t, ctx, train.optimizer));

  ASSIGN_OR_RETURN(MapReader lr, t.Map("lr_schedule", "a map {warmup, decay, min_lr}"));
  RETURN_IF_ERROR(lr.CheckKeys({"warmup", "decay", "min_lr"}));
  RETURN_IF_ERROR(lr.Int("warmup", &train.lr_schedule.warmup));
  RETURN_IF_ERROR(lr.Enum("decay", internal::kLrDecayNames, &train.lr_schedule.decay));
  RETURN_IF_ERROR(lr.Double("min_lr", &train.lr_schedule.min_lr));

  RETURN_IF_ERROR(t.Double("grad_clip", &train.grad_clip));
  RETURN_IF_ERROR(t.Enum("precision", internal::kPrecisionNames, &train.precision));
  ASSIGN_OR_RETURN(MapReader ls, t.Map("loss_scale", "a map {initial, growth_interval, min}"));
  RETURN_IF_ERROR(ls.CheckKeys({"initial", "growth_interval", "min"}));
  RETURN_IF_ERROR(ls.Double("initial", &train.loss_scale.initial));
  RETURN_IF_ERROR(ls.Int("growth_interval", &train.loss_scale.growth_interval));
  RETURN_IF_ERROR(ls.Double("min", &train.loss_scale.min));
  RETURN_IF_ERROR(t.Uint("seed", &train.seed));
  RETURN_IF_ERROR(t.Int("max_restarts", &train.max_restarts));

  ASSIGN_OR_RETURN(MapReader c, t.Map("checkpoint", "a map {dir, every, keep, save}"));
  RETURN_IF_ERROR(c.CheckKeys({"dir", "every", "keep", "save"}));
  RETURN_IF_ERROR(c.String("dir", &train.checkpoint.dir));
  RETURN_IF_ERROR(c.Int("every", &train.checkpoint.every));
  RETURN_IF_ERROR(c.Int("keep", &train.checkpoint.keep));
  RETURN_IF_ERROR(c.Bool("save", &train.checkpoint.save));
  RETURN_IF_ERROR(t.Bool("resume", &train.resume));

  RETURN_IF_ERROR(t.Int("val_every", &train.val_every));
  RETURN_IF_ERROR(t.Int("val_batches", &train.val_batches));
  return t.Int("log_every", &train.log_every);
}

// `key: N` or `key: {size: N, ...}`; `more` reads the map form's other keys.
template <typename ReadMore>
absl::Status ParseDegree(const MapReader& p, absl::string_view key,
                         const std::vector<std::string>& keys, absl::string_view expected,
                         int64_t* size, ReadMore more) {
  if (!p.Has(key)) return absl::OkStatus();
  if (p.Get(key).IsScalar()) return p.Int(key, size);
  ASSIGN_OR_RETURN(MapReader m, p.Map(key, expected));
  RETURN_IF_ERROR(m.CheckKeys(keys));
  RETURN_IF_ERROR(m.Int("size", size));
  return more(m);
}

absl::Status ReadByteSize(const MapReader& m, absl::string_view key, int64_t* out) {
  if (!m.Has(key)) return absl::OkStatus();
  YAML::Node node = m.Get(key);
  absl::StatusOr<int64_t> as_int = internal::ScalarToInt(node);
  if (as_int.ok()) {
    *out = *as_int;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> text = internal::ScalarToString(node);
  absl::StatusOr<int64_t> bytes =
      text.ok() ? ParseByteSize(*text) : absl::StatusOr<int64_t>(text.status());
  if (!bytes.ok()) {
    return m.ErrorAt(key, absl::StrCat("expected a byte size such as 8GiB, 512MiB, 1.5GB or "
                                       "1024, got ", internal::Describe(node)));
  }
  *out = *bytes;
  return absl::OkStatus();
}

absl::Status ParseParallel(const MapReader& root, JobSpec& spec) {
  ParallelSpec& par = spec.parallel;
  constexpr absl::string_view kExpected =
      "'auto' or a map {data, zero, tensor, pipeline, sequence}";
  if (root.Has("parallel") && root.Get("parallel").IsScalar()) {
    absl::StatusOr<std::string> text = internal::ScalarToString(root.Get("parallel"));
    if (*text != "auto") {
      return root.ErrorAt("parallel", absl::StrCat("expected ", kExpected, ", got ",
                                                   internal::Describe(root.Get("parallel"))));
    }
    par.auto_plan = true;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(MapReader p, root.Map("parallel", kExpected));
  RETURN_IF_ERROR(p.CheckKeys({"auto", "data", "zero", "bucket", "reduce_dtype", "timeout_s", "tensor",
                               "pipeline", "sequence"}));
  RETURN_IF_ERROR(p.Bool("auto", &par.auto_plan));
  RETURN_IF_ERROR(p.Int("data", &par.data));
  RETURN_IF_ERROR(p.Int("zero", &par.zero));
  RETURN_IF_ERROR(ReadByteSize(p, "bucket", &par.bucket_bytes));
  RETURN_IF_ERROR(p.Enum("reduce_dtype", internal::kReduceDTypeNames, &par.reduce_dtype));
  RETURN_IF_ERROR(p.Int("timeout_s", &par.timeout_s));
  RETURN_IF_ERROR(ParseDegree(
      p, "tensor", {"size", "mode", "depth", "sequence_parallel"},
      "an integer or a map {size, mode: 1d|2d|2.5d|3d, depth, sequence_parallel}", &par.tensor,
      [&](const MapReader& m) {
        RETURN_IF_ERROR(m.Enum("mode", internal::kTensorModeNames, &par.tensor_mode));
        RETURN_IF_ERROR(m.Int("depth", &par.tensor_depth));
        return m.Bool("sequence_parallel", &par.tensor_sequence_parallel);
      }));
  RETURN_IF_ERROR(ParseDegree(
      p, "pipeline", {"size", "schedule", "microbatches", "chunks", "layers_per_stage"},
      "an integer or a map {size, schedule: gpipe|1f1b|interleaved|zb-h1|zbv, microbatches, "
      "chunks, layers_per_stage}",
      &par.pipeline, [&](const MapReader& m) {
        RETURN_IF_ERROR(m.Enum("schedule", internal::kPipelineScheduleNames, &par.pipeline_schedule));
        RETURN_IF_ERROR(m.Int("microbatches", &par.pipeline_microbatches));
        RETURN_IF_ERROR(m.Int("chunks", &par.pipeline_chunks));
        return m.IntList("layers_per_stage", &par.pipeline_layers_per_stage);
      }));
  return ParseDegree(p, "sequence", {"size", "mode", "zigzag"},
                     "an integer or a map {size, mode: ring|all_to_all, zigzag}", &par.sequence,
                     [&](const MapReader& m) {
                       RETURN_IF_ERROR(m.Enum("mode", internal::kSequenceModeNames, &par.sequence_mode));
                       return m.Bool("zigzag", &par.sequence_zigzag);
                     });
}


absl::Status ParseMemory(const MapReader& root, JobSpec& spec) {
  ASSIGN_OR_RETURN(MapReader m, root.Map("memory", "a map {placement, device_budget, nvme_dir, ...}"));
  RETURN_IF_ERROR(m.CheckKeys({"placement", "device_budget", "host_budget", "nvme_dir", "nvme_budget",
                               "chunk_bytes", "offload_param_frac", "offload_optim_frac",
                               "activation_checkpointing"}));
  RETURN_IF_ERROR(m.Enum("placement", internal::kPlacementNames, &spec.memory.placement));
  RETURN_IF_ERROR(ReadByteSize(m, "device_budget", &spec.memory.device_budget));
  RETURN_IF_ERROR(ReadByteSize(m, "host_budget", &spec.memory.host_budget));
  RETURN_IF_ERROR(m.String("nvme_dir", &spec.memory.nvme_dir));
  RETURN_IF_ERROR(ReadByteSize(m, "nvme_budget", &spec.memory.nvme_budget));
  RETURN_IF_ERROR(ReadByteSize(m, "chunk_bytes", &spec.memory.chunk_bytes));
  RETURN_IF_ERROR(m.Double("offload_param_frac", &spec.memory.offload_param_frac));
  RETURN_IF_ERROR(m.Double("offload_optim_frac", &spec.memory.offload_optim_frac));
  MemorySpec& mem = spec.memory;
  if (!m.Has("activation_checkpointing") || m.Get("activation_checkpointing").IsScalar()) {
    return m.Bool("activation_checkpointing", &mem.activation_checkpointing);
  }
  ASSIGN_OR_RETURN(MapReader ac, m.Map("activation_checkpointing", "true, false, {every: k} or {layers: N}"));
  RETURN_IF_ERROR(ac.CheckKeys({"every", "layers"}));
  if (ac.Has("every") && ac.Has("layers")) {
    return ac.ErrorAt("layers", "give either every (every k-th layer) or layers (the first N of each stage), not both");
  }
  mem.activation_checkpointing = true;
  RETURN_IF_ERROR(ac.Int("every", &mem.checkpoint_every));
  return ac.Int("layers", &mem.checkpoint_layers);
}

absl::Status ParseResources(const MapReader& root, JobSpec& spec) {
  ASSIGN_OR_RETURN(MapReader r,
                   root.Map("resources", "a map {device, nodes, ranks_per_node, threads_per_rank}"));
  RETURN_IF_ERROR(r.CheckKeys({"device", "nodes", "ranks_per_node", "threads_per_rank"}));
  if (r.Has("device") && r.Get("device").IsScalar() &&
      absl::AsciiStrToLower(r.Get("device").Scalar()) == "gpu") {
    return r.ErrorAt("device", "unknown value 'gpu'; write cuda for NVIDIA GPUs (one of cpu|cuda)");
  }
  RETURN_IF_ERROR(r.Enum("device", internal::kDeviceKindNames, &spec.resources.device));
  RETURN_IF_ERROR(r.Int("nodes", &spec.resources.nodes));
  RETURN_IF_ERROR(r.Int("ranks_per_node", &spec.resources.ranks_per_node));
  return r.Int("threads_per_rank", &spec.resources.threads_per_rank);
}

absl::Status ParseSample(const MapReader& root, JobSpec& spec) {
  ASSIGN_OR_RETURN(MapReader s, root.Map("sample", "a map {prompt, tokens, temperature, top_k}"));
  RETURN_IF_ERROR(s.CheckKeys({"prompt", "tokens", "temperature", "top_k"}));
  RETURN_IF_ERROR(s.String("prompt", &spec.sample.prompt));
  RETURN_IF_ERROR(s.Int("tokens", &spec.sample.tokens));
  RETURN_IF_ERROR(s.Double("temperature", &spec.sample.temperature));
  return s.Int("top_k", &spec.sample.top_k);
}

absl::Status ParseEnv(const MapReader& root, JobSpec& spec) {
  if (!root.Has("env")) return absl::OkStatus();
  const YAML::Node env = root.Get("env");
  if (env.IsNull()) return absl::OkStatus();
  if (!env.IsMap()) {
    return root.ErrorAt("env", absl::StrCat("expected a map {NAME: value}, got ", internal::Describe(env)));
  }
  for (const auto& kv : env) {
    const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
    bool valid = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0]));
    for (char c : name) valid &= std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    if (!valid) {
      return root.ErrorAt("env", absl::StrCat("'", internal::OneLine(name),
                                              "' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if (!kv.second.IsScalar()) {
      return root.ErrorAt("env", absl::StrCat("env.", name, ": expected a string, got ",
                                              internal::Describe(kv.second)));
    }
    spec.env[name] = kv.second.Scalar();
  }
  return absl::OkStatus();
}

std::string JoinDir(const std::string& dir, absl::string_view leaf) {
  if (!dir.empty() && dir.back() == '/') return absl::StrCat(dir, leaf);
  return absl::StrCat(dir, "/", leaf);
}

// Fills the defaults that depend on other fields.
void FillDerivedDefaults(const YamlContext& ctx, JobSpec& spec) {
  ParallelSpec& p = spec.parallel;
  if (!ctx.Written("parallel.pipeline.chunks")) {
    const bool two = p.pipeline_schedule == PipelineSchedule::kInterleaved ||
                     p.pipeline_schedule == PipelineSchedule::kZbv;
    p.pipeline_chunks = two ? 2 : 1;
  }
  // Micro-batches: parallel.pipeline.microbatches and train.micro_batch each set the
  // other (their product with parallel.data is train.global_batch); a pipeline without
  // either runs micro-batches of one sequence; otherwise the micro-batch is the rank's
  // whole share, one micro-batch per step.
  const int64_t per_rank = p.data >= 1 ? spec.train.global_batch / p.data : 0;
  if (!ctx.Written("train.micro_batch")) {
    if (ctx.Written("parallel.pipeline.microbatches") && p.pipeline_microbatches >= 1) {
      spec.train.micro_batch = std::max<int64_t>(1, per_rank / p.pipeline_microbatches);
    } else {
      spec.train.micro_batch = p.pipeline > 1 ? 1 : per_rank;
    }
  }
  if (!ctx.Written("parallel.pipeline.microbatches") && spec.train.micro_batch >= 1) {
    p.pipeline_microbatches = std::max<int64_t>(1, per_rank / spec.train.micro_batch);
  }
  if (!ctx.Written("run_dir")) spec.run_dir = JoinDir("runs", spec.name);
  if (!ctx.Written("train.checkpoint.dir")) {
    spec.train.checkpoint.dir = JoinDir(spec.run_dir, "checkpoints");
  }
}

absl::StatusOr<JobSpec> ParseTree(YAML::Node root, YamlContext& ctx,
                                  const std::vector<std::string>& overrides, Unbuilt unbuilt) {
  constexpr absl::string_view kTopLevel =
      "a map of keys (name, model, data, train, parallel, memory, resources, sample, env)";
  if (!root.IsMap()) {
    return ctx.Error(ctx.Where(root, ""), "",
                     absl::StrCat("the job must be ", kTopLevel, ", got ", internal::Describe(root)));
  }
  RETURN_IF_ERROR(internal::ApplyOverrides(root, overrides, ctx));
  ASSIGN_OR_RETURN(MapReader top, MapReader::Open(ctx, root, "", ctx.source(), kTopLevel,
                                                  /*null_is_empty=*/false));
  RETURN_IF_ERROR(top.CheckKeys(
      {"name", "run_dir", "model", "data", "train", "parallel", "memory", "resources", "sample",
       "env"}));
  JobSpec spec;
  spec.source = ctx.source();
  if (!top.Has("name")) return top.Missing("name", "the job's name, e.g. name: gpt-small");
  RETURN_IF_ERROR(top.String("name", &spec.name));
  RETURN_IF_ERROR(top.String("run_dir", &spec.run_dir));
  RETURN_IF_ERROR(ParseModel(top, spec));
  RETURN_IF_ERROR(ParseData(top, spec));
  RETURN_IF_ERROR(ParseTrain(top, ctx, spec));
  RETURN_IF_ERROR(ParseParallel(top, spec));
  RETURN_IF_ERROR(ParseMemory(top, spec));
  RETURN_IF_ERROR(ParseResources(top, spec));
  RETURN_IF_ERROR(ParseEnv(top, spec));
  RETURN_IF_ERROR(ParseSample(top, spec));
  FillDerivedDefaults(ctx, spec);
  RETURN_IF_ERROR(internal::ValidateJobSpec(spec, ctx, unbuilt));
  return spec;
}

// Checks that `path` (the value of `key`) names something readable: a regular file, or
// also a directory when `allow_dir`.
absl::Status CheckReadable(const JobSpec& spec, absl::string_view key, const std::string& path,
                           bool allow_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string prefix = absl::StrCat(spec.source, ": ", key, ": ");
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    std::string cwd = fs::current_path(ec).string();
    return absl::NotFoundError(absl::StrCat(prefix, "'", path, "' does not exist",
                                            fs::path(path).is_relative()
                                                ? absl::StrCat(" (relative to ", cwd, ")")
                                                : std::string(),
                                            "; give the path of an existing ",
                                            allow_dir ? "file or directory" : "file"));
  }
  if (fs::is_directory(status)) {
    if (!allow_dir) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "'", path, "' is a directory; expected a file"));
    }
    fs::directory_iterator it(path, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat(prefix, "cannot read directory '", path, "': ", ec.message()));
    }
    return absl::OkStatus();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(absl::StrCat(prefix, "cannot read '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpec(std::string_view yaml, std::string_view source,
                                     const std::vector<std::string>& overrides, Unbuilt unbuilt) {
  YamlContext ctx{std::string(source)};
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where = e.mark.is_null()
                            ? ctx.source()
                            : absl::StrCat(ctx.source(), ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(internal::OneLine(absl::StrCat(where, ": invalid YAML: ", e.msg)));
  }
  if (docs.size() > 1) {
    return ctx.Error(ctx.Where(docs[1], ""), "",
                     "a job file holds one YAML document; found a second one (after '---')");
  }
  YAML::Node root = docs.empty() ? YAML::Node() : docs[0];
  try {
    return ParseTree(root, ctx, overrides, unbuilt);
  } catch (const YAML::Exception& e) {
    // Not expected (reads check node kinds first); kept so no exception escapes.
    return absl::InvalidArgumentError(
        internal::OneLine(absl::StrCat(ctx.source(), ": cannot read YAML: ", e.msg)));
  }
}

absl::StatusOr<JobSpec> LoadJobSpec(const std::string& path,
                                    const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": job file does not exist"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, expected a job YAML file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read the job file"));
  }
  return ParseJobSpec(text.str(), path, overrides);
}

absl::Status ValidateJobFiles(const JobSpec& spec) {
  RETURN_IF_ERROR(CheckReadable(spec, "data.train", spec.data.train, /*allow_dir=*/false));
  if (spec.model.kind == ModelSpec::Kind::kGraph) {
    RETURN_IF_ERROR(CheckReadable(spec, "model.graph", spec.model.graph_path, /*allow_dir=*/false));
  }
  if (!spec.model.init_from.empty()) {
    RETURN_IF_ERROR(CheckReadable(spec, "model.init_from", spec.model.init_from, /*allow_dir=*/true));
  }
  if (!spec.memory.nvme_dir.empty()) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string prefix = absl::StrCat(spec.source, ": memory.nvme_dir: ");
    if (!fs::is_directory(spec.memory.nvme_dir, ec)) {
      return absl::NotFoundError(absl::StrCat(prefix, "'", spec.memory.nvme_dir,
                                              "' is not an existing directory; give one for the chunk file"));
    }
    if (access(spec.memory.nvme_dir.c_str(), W_OK | X_OK) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(prefix, "'", spec.memory.nvme_dir, "' is not writable"));
    }
  }
  return absl::OkStatus();
}

void ResolvePaths(JobSpec& spec, const std::string& base_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path base = fs::absolute(base_dir, ec);
  if (ec) base = fs::path(base_dir);
  for (std::string* path : {&spec.data.train, &spec.model.graph_path, &spec.model.init_from,
                            &spec.run_dir, &spec.train.checkpoint.dir, &spec.memory.nvme_dir}) {
    if (path->empty() || fs::path(*path).is_absolute()) continue;
    *path = (base / *path).lexically_normal().string();
  }
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text_std) {
  absl::string_view text = internal::Sv(text_std);
  const absl::string_view original = text;
  auto invalid = [&]() {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", original, "' is not a byte size; expected a number and an optional unit: B, KB, "
        "MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 8GiB"));
  };
  text = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  bool has_point = false;
  while (digits < text.size() &&
         (absl::ascii_isdigit(static_cast<unsigned char>(text[digits])) ||
          (text[digits] == '.' && !has_point))) {
    has_point |= text[digits] == '.';
    ++digits;
  }
  absl::string_view number = text.substr(0, digits);
  std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(digits)));
  if (number.empty() || number == ".") return invalid();
  static const std::pair<const char*, int64_t> kUnits[] = {
      {"", 1},          {"b", 1},
      {"kb", 1000},     {"mb", 1000 * 1000},
      {"gb", 1000LL * 1000 * 1000},  {"tb", 1000LL * 1000 * 1000 * 1000},
      {"kib", 1LL << 10}, {"mib", 1LL << 20},
      {"gib", 1LL << 30}, {"tib", 1LL << 40},
  };
  int64_t scale = 0;
  for (const auto& [name, value] : kUnits) {
    if (unit == name) scale = value;
  }
  if (scale == 0) return invalid();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto too_large = [&]() {
    return absl::InvalidArgumentError(absl::StrCat("'", original, "' is too large a byte size"));
  };
  if (!has_point) {
    int64_t count = 0;
    if (!absl::SimpleAtoi(number, &count)) return too_large();
    if (count > kMax / scale) return too_large();
    return count * scale;
  }
  double count = 0;
  if (!absl::SimpleAtod(number, &count)) return invalid();
  double bytes = count * static_cast<double>(scale);
  if (bytes >= 9.2e18) return too_large();
  // Fractions of a unit round to the nearest byte ("0.1GiB" = 107374182 bytes).
  return static_cast<int64_t>(std::llround(bytes));
}

std::string_view OptimizerTypeName(OptimizerType type) {
  return internal::NameOf(internal::kOptimizerNames, type);
}
std::string_view ReduceDTypeName(ReduceDType dtype) { return internal::NameOf(internal::kReduceDTypeNames, dtype); }

std::string_view PrecisionName(Precision precision) {
  return internal::NameOf(internal::kPrecisionNames, precision);
}
std::string_view LrDecayName(LrDecay decay) { return internal::NameOf(internal::kLrDecayNames, decay); }
std::string_view PipelineScheduleName(PipelineSchedule schedule) {
  return internal::NameOf(internal::kPipelineScheduleNames, schedule);
}
std::string_view SequenceModeName(SequenceMode mode) {
  return internal::NameOf(internal::kSequenceModeNames, mode);
}
std::string_view PlacementName(Placement placement) {
  return internal::NameOf(internal::kPlacementNames, placement);
}
std::string_view DeviceKindName(DeviceKind device) {
  return internal::NameOf(internal::kDeviceKindNames, device);
}

}  // namespace colossal::config
