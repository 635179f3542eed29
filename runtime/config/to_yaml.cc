// ToYaml: the canonical YAML of a JobSpec. Every field is written, defaults included,
// in the order of ARCHITECTURE.md's "Job YAML"; strings are double-quoted (so "123",
// "true" or "" stay strings), numbers use the shortest text that reads back exactly.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "runtime/config/enum_names.h"
#include "runtime/config/job_spec.h"

namespace colossal::config {
namespace {

// Shortest %g text that parses back to exactly `value`; whole numbers without an
// exponent ("10", not "1e+01").
std::string FormatDouble(double value) {
  char buffer[40];
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof(buffer), "%.0f", value);
    return buffer;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

// "8GiB" when `bytes` is a whole number of GiB (or MiB, KiB), else the plain count.
std::string FormatBytes(int64_t bytes) {
  if (bytes > 0) {
    for (auto [unit, scale] : {std::pair{"TiB", int64_t{1} << 40}, std::pair{"GiB", int64_t{1} << 30},
                               std::pair{"MiB", int64_t{1} << 20}, std::pair{"KiB", int64_t{1} << 10}}) {
      if (bytes % scale == 0) return absl::StrCat(bytes / scale, unit);
    }
  }
  return absl::StrCat(bytes);
}

class Writer {
 public:
  Writer() { out_ << YAML::BeginMap; }

  std::string Finish() {
    out_ << YAML::EndMap;
    return absl::StrCat(out_.c_str(), "\n");
  }

  void BeginMap(const char* key, bool flow = false) {
    out_ << YAML::Key << key << YAML::Value;
    if (flow) out_ << YAML::Flow;
    out_ << YAML::BeginMap;
  }
  void EndMap() { out_ << YAML::EndMap; }

  void Str(const char* key, const std::string& value) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
  }
  void Plain(const char* key, std::string_view value) {
    out_ << YAML::Key << key << YAML::Value << std::string(value);
  }
  void Int(const char* key, int64_t value) { Plain(key, absl::StrCat(value)); }
  void Uint(const char* key, uint64_t value) { Plain(key, absl::StrCat(value)); }
  void Double(const char* key, double value) { Plain(key, FormatDouble(value)); }
  void Bool(const char* key, bool value) { Plain(key, value ? "true" : "false"); }

  void DoubleList(const char* key, std::initializer_list<double> values) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double v : values) out_ << FormatDouble(v);
    out_ << YAML::EndSeq;
  }
  void Ints(const char* key, const std::vector<int64_t>& values) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (int64_t v : values) out_ << absl::StrCat(v);
    out_ << YAML::EndSeq;
  }
  void StrList(const char* key, const std::vector<std::string>& values) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& v : values) out_ << YAML::DoubleQuoted << v;
    out_ << YAML::EndSeq;
  }

 private:
  YAML::Emitter out_;
};

void WriteModel(Writer& w, const ModelSpec& m) {
  w.BeginMap("model");
  if (m.kind == ModelSpec::Kind::kGraph) {
    w.Str("graph", m.graph_path);
  } else {
    w.Plain("type", "gpt");
    w.Int("n_layer", m.gpt.n_layer);
    w.Int("n_head", m.gpt.n_head);
    w.Int("d_model", m.gpt.d_model);
    w.Int("seq_len", m.gpt.seq_len);
    w.Int("vocab", m.gpt.vocab);
    w.Plain("attention", m.gpt.attention);
  }
  w.Str("init_from", m.init_from);
  w.EndMap();
}

void WriteTrain(Writer& w, const TrainSpec& t) {
  w.BeginMap("train");
  w.Int("steps", t.steps);
  w.Int("global_batch", t.global_batch);
  w.Int("micro_batch", t.micro_batch);
  const OptimizerSpec& o = t.optimizer;
  w.BeginMap("optimizer");
  w.Plain("type", OptimizerTypeName(o.type));
  w.Double("lr", o.lr);
  w.DoubleList("betas", {o.beta1, o.beta2});
  w.Double("eps", o.eps);
  w.Double("weight_decay", o.weight_decay);
  w.StrList("no_decay", o.no_decay);
  w.Double("trust_clip", o.trust_clip);
  w.Double("momentum", o.momentum);
  w.Double("trust_coef", o.trust_coef);
  w.Bool("nesterov", o.nesterov);
  w.EndMap();
  w.BeginMap("lr_schedule", /*flow=*/true);
  w.Int("warmup", t.lr_schedule.warmup);
  w.Plain("decay", LrDecayName(t.lr_schedule.decay));
  w.Double("min_lr", t.lr_schedule.min_lr);
  w.EndMap();
  w.Double("grad_clip", t.grad_clip);
  w.Plain("precision", PrecisionName(t.precision));
  if (t.precision == Precision::kFp16) {
    w.BeginMap("loss_scale", /*flow=*/true);
    w.Double("initial", t.loss_scale.initial);
    w.Int("growth_interval", t.loss_scale.growth_interval);
    w.Double("min", t.loss_scale.min);
    w.EndMap();
  }
  w.Uint("seed", t.seed);
  w.Int("max_restarts", t.max_restarts);
  w.Bool("resume", t.resume);
  w.BeginMap("checkpoint");
  w.Str("dir", t.checkpoint.dir);
  w.Int("every", t.checkpoint.every);
  w.Int("keep", t.checkpoint.keep);
  w.Bool("save", t.checkpoint.save);
  w.EndMap();
  w.Int("val_every", t.val_every);
  w.Int("val_batches", t.val_batches);
  w.Int("log_every", t.log_every);
  w.EndMap();
}

void WriteParallel(Writer& w, const ParallelSpec& p) {
  w.BeginMap("parallel");
  w.Bool("auto", p.auto_plan);
  w.Int("data", p.data);
  w.Int("zero", p.zero);
  w.Plain("bucket", FormatBytes(p.bucket_bytes));
  w.Plain("reduce_dtype", ReduceDTypeName(p.reduce_dtype));
  w.Int("timeout_s", p.timeout_s);
  w.BeginMap("tensor", /*flow=*/true);
  w.Int("size", p.tensor);
  w.Plain("mode", TensorModeName(p.tensor_mode));
  w.Int("depth", p.tensor_depth);
  w.Bool("sequence_parallel", p.tensor_sequence_parallel);
  w.EndMap();
  w.BeginMap("pipeline", /*flow=*/true);
  w.Int("size", p.pipeline);
  if (p.pipeline > 1) {  // one stage has no schedule (validation refuses one)
    w.Plain("schedule", PipelineScheduleName(p.pipeline_schedule));
    w.Int("chunks", p.pipeline_chunks);
    if (!p.pipeline_layers_per_stage.empty()) w.Ints("layers_per_stage", p.pipeline_layers_per_stage);
  }
  w.Int("microbatches", p.pipeline_microbatches);
  w.EndMap();
  w.BeginMap("sequence", /*flow=*/true);
  w.Int("size", p.sequence);
  if (p.sequence > 1) {  // one rank has no mode (validation refuses one)
    w.Plain("mode", SequenceModeName(p.sequence_mode));
    if (p.sequence_mode == SequenceMode::kRing) w.Bool("zigzag", p.sequence_zigzag);
  }
  w.EndMap();
  w.EndMap();
}

}  // namespace

std::string ToYaml(const JobSpec& spec) {
  Writer w;
  w.Str("name", spec.name);
  w.Str("run_dir", spec.run_dir);
  WriteModel(w, spec.model);

  w.BeginMap("data");
  w.Str("train", spec.data.train);
  w.Str("tokenizer", spec.data.tokenizer);
  w.Double("val_fraction", spec.data.val_fraction);
  w.Bool("shuffle", spec.data.shuffle);
  w.EndMap();

  WriteTrain(w, spec.train);
  WriteParallel(w, spec.parallel);

  w.BeginMap("memory");
  w.Plain("placement", PlacementName(spec.memory.placement));
  w.Plain("device_budget", FormatBytes(spec.memory.device_budget));
  w.Plain("host_budget", FormatBytes(spec.memory.host_budget));
  w.Str("nvme_dir", spec.memory.nvme_dir);
  w.Plain("nvme_budget", FormatBytes(spec.memory.nvme_budget));
  w.Plain("chunk_bytes", FormatBytes(spec.memory.chunk_bytes));
  w.Double("offload_param_frac", spec.memory.offload_param_frac);
  w.Double("offload_optim_frac", spec.memory.offload_optim_frac);
  const MemorySpec& mem = spec.memory;
  if (mem.activation_checkpointing && (mem.checkpoint_every != 1 || mem.checkpoint_layers > 0)) {
    w.BeginMap("activation_checkpointing", /*flow=*/true);
    if (mem.checkpoint_layers > 0) {
      w.Int("layers", mem.checkpoint_layers);
    } else {
      w.Int("every", mem.checkpoint_every);
    }
    w.EndMap();
  } else {
    w.Bool("activation_checkpointing", mem.activation_checkpointing);
  }
  w.EndMap();

  w.BeginMap("resources");
  w.Plain("device", DeviceKindName(spec.resources.device));
  w.Int("nodes", spec.resources.nodes);
  w.Int("ranks_per_node", spec.resources.ranks_per_node);
  w.Int("threads_per_rank", spec.resources.threads_per_rank);
  w.EndMap();

  w.BeginMap("sample");
  w.Str("prompt", spec.sample.prompt);
  w.Int("tokens", spec.sample.tokens);
  w.Double("temperature", spec.sample.temperature);
  w.Int("top_k", spec.sample.top_k);
  w.EndMap();

  w.BeginMap("env");
  for (const auto& [name, value] : spec.env) w.Str(name.c_str(), value);
  w.EndMap();
  return w.Finish();
}

}  // namespace colossal::config
