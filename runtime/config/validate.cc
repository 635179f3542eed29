// Range and consistency checks of a parsed JobSpec; the first violation is returned.
// Checks run in document order, one section at a time, then the cross-section rules;
// a later check may rely on the earlier ones (no division by a zero degree).
#include "runtime/config/validate.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "graph/models/gpt_split.h"
#include "kernels/common/cuda_plugin.h"
#include "parallel/tensor_grid.h"
#include "runtime/data/tokenizer.h"

namespace colossal::config::internal {
namespace {

// Returns InvalidArgument at the location of `path` unless `cond` holds.
#define ENSURE(cond, path, ...)                                         \
  do {                                                                  \
    if (!(cond)) return ctx.ErrorKey((path), absl::StrCat(__VA_ARGS__)); \
  } while (0)

// A degree is written as `tensor: 4` or `tensor: {size: 4, ...}`: point at what was written.
std::string DegreePath(const YamlContext& ctx, absl::string_view axis) {
  std::string size_path = absl::StrCat("parallel.", axis, ".size");
  return ctx.Written(size_path) ? size_path : absl::StrCat("parallel.", axis);
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

absl::Status ValidateTop(const JobSpec& s, const YamlContext& ctx) {
  bool name_ok = !s.name.empty() && s.name != "." && s.name != "..";
  for (char c : s.name) name_ok = name_ok && IsNameChar(c);
  ENSURE(name_ok, "name",
         "must be letters, digits, '.', '_' or '-' (it names the run directory), got '",
         s.name, "'");
  ENSURE(!s.run_dir.empty(), "run_dir",
         "must not be empty; leave it out for the default runs/<name>");
  return absl::OkStatus();
}

absl::Status ValidateModel(const JobSpec& s, const YamlContext& ctx) {
  const ModelSpec& m = s.model;
  if (m.kind == ModelSpec::Kind::kGraph) {
    ENSURE(!m.graph_path.empty(), "model.graph", "must name a graph file, got ''");
    return absl::OkStatus();
  }
  const GptModelSpec& g = m.gpt;
  ENSURE(g.n_layer >= 1, "model.n_layer", "must be >= 1, got ", g.n_layer);
  ENSURE(g.n_head >= 1, "model.n_head", "must be >= 1, got ", g.n_head);
  ENSURE(g.d_model >= 1, "model.d_model", "must be >= 1, got ", g.d_model);
  ENSURE(g.d_model % g.n_head == 0, "model.d_model",
         "must be a multiple of model.n_head (", g.n_head, "), got ", g.d_model);
  ENSURE(g.seq_len >= 1, "model.seq_len", "must be >= 1, got ", g.seq_len);
  ENSURE(g.vocab >= 1, "model.vocab", "must be >= 1, got ", g.vocab);
  return absl::OkStatus();
}

absl::Status ValidateData(const JobSpec& s, const YamlContext& ctx) {
  const DataSpec& d = s.data;
  ENSURE(!d.train.empty(), "data.train", "must name the training text or token file, got ''");
  ENSURE(d.val_fraction >= 0.0 && d.val_fraction < 0.5, "data.val_fraction",
         "must be in [0, 0.5), got ", d.val_fraction);
  // The model's vocabulary may exceed the tokenizer's (padding), never fall short of it.
  absl::StatusOr<std::unique_ptr<data::Tokenizer>> tokenizer = data::MakeTokenizer(d.tokenizer);
  ENSURE(tokenizer.ok(), "data.tokenizer", tokenizer.status().message());
  if (s.model.kind == ModelSpec::Kind::kGpt) {
    const int64_t needed = (*tokenizer)->vocab_size();
    ENSURE(s.model.gpt.vocab >= needed, "model.vocab", "must be >= ", needed,
           " with data.tokenizer: ", d.tokenizer, " (its vocabulary size), got ",
           s.model.gpt.vocab);
  }
  return absl::OkStatus();
}

absl::Status ValidateOptimizer(const OptimizerSpec& o, const YamlContext& ctx) {
  const OptimizerSpec defaults;
  const absl::string_view type = Sv(OptimizerTypeName(o.type));
  const bool uses_betas = o.type == OptimizerType::kAdamW || o.type == OptimizerType::kLamb;
  ENSURE(o.lr > 0.0, "train.optimizer.lr", "must be > 0, got ", o.lr);
  ENSURE(o.beta1 >= 0.0 && o.beta1 < 1.0, "train.optimizer.betas[0]",
         "must be in [0, 1), got ", o.beta1);
  ENSURE(o.beta2 >= 0.0 && o.beta2 < 1.0, "train.optimizer.betas[1]",
         "must be in [0, 1), got ", o.beta2);
  ENSURE(o.eps > 0.0, "train.optimizer.eps", "must be > 0, got ", o.eps);
  ENSURE(o.weight_decay >= 0.0, "train.optimizer.weight_decay", "must be >= 0, got ",
         o.weight_decay);
  ENSURE(o.trust_clip > 0.0, "train.optimizer.trust_clip", "must be > 0, got ", o.trust_clip);
  ENSURE(o.momentum >= 0.0 && o.momentum < 1.0, "train.optimizer.momentum",
         "must be in [0, 1), got ", o.momentum);
  ENSURE(o.trust_coef > 0.0, "train.optimizer.trust_coef", "must be > 0, got ", o.trust_coef);
  // A setting the chosen optimizer ignores is almost always a mistake; its default
  // value is accepted so that ToYaml can write every field.
  ENSURE(uses_betas || (o.beta1 == defaults.beta1 && o.beta2 == defaults.beta2),
         "train.optimizer.betas", "only adamw and lamb use betas; ", type,
         " ignores them: remove the key");
  ENSURE(o.type == OptimizerType::kLamb || o.trust_clip == defaults.trust_clip,
         "train.optimizer.trust_clip", "only lamb uses trust_clip; ", type,
         " ignores it: remove the key");
  ENSURE(o.type == OptimizerType::kLars || o.type == OptimizerType::kSgd ||
             o.momentum == defaults.momentum,
         "train.optimizer.momentum", "only lars and sgd use momentum; ", type,
         " ignores it: remove the key");
  ENSURE(o.type == OptimizerType::kLars || o.trust_coef == defaults.trust_coef,
         "train.optimizer.trust_coef", "only lars uses trust_coef; ", type,
         " ignores it: remove the key");
  ENSURE(o.type == OptimizerType::kSgd || o.nesterov == defaults.nesterov,
         "train.optimizer.nesterov", "only sgd uses nesterov; ", type,
         " ignores it: remove the key");
  return absl::OkStatus();
}

absl::Status ValidateTrain(const JobSpec& s, const YamlContext& ctx) {
  const TrainSpec& t = s.train;
  ENSURE(t.steps >= 1, "train.steps", "must be >= 1, got ", t.steps);
  ENSURE(t.global_batch >= 1, "train.global_batch", "must be >= 1, got ", t.global_batch);
  if (ctx.Written("train.micro_batch")) {
    ENSURE(t.micro_batch >= 1, "train.micro_batch", "must be >= 1, got ", t.micro_batch);
  }
  if (absl::Status st = ValidateOptimizer(t.optimizer, ctx); !st.ok()) return st;
  const LrScheduleSpec& lr = t.lr_schedule;
  ENSURE(lr.warmup >= 0, "train.lr_schedule.warmup", "must be >= 0, got ", lr.warmup);
  ENSURE(lr.warmup < t.steps, "train.lr_schedule.warmup",
         "must be less than train.steps (", t.steps, "), got ", lr.warmup);
  ENSURE(lr.min_lr >= 0.0, "train.lr_schedule.min_lr", "must be >= 0, got ", lr.min_lr);
  ENSURE(lr.min_lr <= t.optimizer.lr, "train.lr_schedule.min_lr",
         "must be <= train.optimizer.lr (", t.optimizer.lr, "), got ", lr.min_lr);
  ENSURE(t.grad_clip >= 0.0, "train.grad_clip", "must be >= 0 (0: no clipping), got ",
         t.grad_clip);
  ENSURE(t.max_restarts >= 0, "train.max_restarts", "must be >= 0, got ", t.max_restarts);
  for (const char* key : {"initial", "growth_interval", "min"}) {
    const std::string path = absl::StrCat("train.loss_scale.", key);
    ENSURE(t.precision == Precision::kFp16 || !ctx.Written(path), path,
           "applies to precision fp16 only (bf16 and fp32 need no loss scaling), got precision ",
           Sv(PrecisionName(t.precision)));
  }
  const LossScaleSpec& ls = t.loss_scale;
  ENSURE(std::isfinite(ls.initial) && ls.initial > 0.0, "train.loss_scale.initial", "must be > 0, got ", ls.initial);
  ENSURE(ls.growth_interval >= 1, "train.loss_scale.growth_interval", "must be >= 1, got ", ls.growth_interval);
  ENSURE(ls.min > 0.0 && ls.min <= ls.initial, "train.loss_scale.min",
         "must be > 0 and <= train.loss_scale.initial (", ls.initial, "), got ", ls.min);
  ENSURE(!t.checkpoint.dir.empty(), "train.checkpoint.dir",
         "must not be empty; leave it out for the default <run_dir>/checkpoints");
  ENSURE(t.checkpoint.every >= 0, "train.checkpoint.every",
         "must be >= 0 (0: only at the end), got ", t.checkpoint.every);
  ENSURE(t.checkpoint.keep >= 0, "train.checkpoint.keep", "must be >= 0 (0: keep all), got ",
         t.checkpoint.keep);
  ENSURE(t.val_every >= 0, "train.val_every", "must be >= 0 (0: only at the end), got ",
         t.val_every);
  ENSURE(t.val_batches >= 1, "train.val_batches", "must be >= 1, got ", t.val_batches);
  ENSURE(t.log_every >= 1, "train.log_every", "must be >= 1, got ", t.log_every);
  return absl::OkStatus();
}

absl::Status ValidateParallel(const JobSpec& s, const YamlContext& ctx) {
  const ParallelSpec& p = s.parallel;
  const std::string tensor = DegreePath(ctx, "tensor");
  ENSURE(p.data >= 1, "parallel.data", "must be >= 1, got ", p.data);
  ENSURE(p.zero >= 0 && p.zero <= 3, "parallel.zero", "must be 0, 1, 2 or 3, got ", p.zero);
  ENSURE(p.bucket_bytes >= 1024, "parallel.bucket", "must be at least 1KiB, got ", p.bucket_bytes);
  ENSURE(p.reduce_dtype == ReduceDType::kFp32 || p.data * p.sequence > 1, "parallel.reduce_dtype",
         "bf16 sums the gradients of data-parallel replicas, and this job has one (parallel.data and "
         "parallel.sequence are 1); remove the key or add replicas");
  ENSURE(p.timeout_s >= 1, "parallel.timeout_s", "must be >= 1 (seconds), got ", p.timeout_s);
  ENSURE(p.tensor >= 1, tensor, "must be >= 1, got ", p.tensor);
  ENSURE(p.tensor_depth >= 1, "parallel.tensor.depth", "must be >= 1, got ", p.tensor_depth);
  ENSURE(p.tensor_mode == TensorMode::k2p5d || p.tensor_depth == 1, "parallel.tensor.depth",
         "only mode 2.5d uses depth, got depth ", p.tensor_depth, " with mode ",
         parallel::TensorModeName(p.tensor_mode));
  ENSURE(!p.tensor_sequence_parallel || (p.tensor > 1 && p.tensor_mode == TensorMode::k1d),
         "parallel.tensor.sequence_parallel",
         "splits the layer-norm regions over the ranks of a 1d tensor group: it needs "
         "parallel.tensor.size > 1 and mode 1d, got size ", p.tensor, " mode ",
         parallel::TensorModeName(p.tensor_mode));
  if (absl::StatusOr<parallel::TensorGrid> grid = parallel::TensorGridOf(p.tensor_mode, p.tensor, p.tensor_depth);
      !grid.ok()) {
    ENSURE(false, tensor, grid.status().message());
  }
  ENSURE(p.pipeline >= 1, DegreePath(ctx, "pipeline"), "must be >= 1, got ", p.pipeline);
  ENSURE(p.pipeline_microbatches >= 1, "parallel.pipeline.microbatches", "must be >= 1, got ",
         p.pipeline_microbatches);
  {
    const std::string_view schedule = PipelineScheduleName(p.pipeline_schedule);
    switch (p.pipeline_schedule) {
      case PipelineSchedule::kInterleaved:
        ENSURE(p.pipeline_chunks >= 2, "parallel.pipeline.chunks",
               "the interleaved schedule needs >= 2 virtual stages per rank, got ", p.pipeline_chunks);
        break;
      case PipelineSchedule::kZbv:
        ENSURE(p.pipeline_chunks == 2, "parallel.pipeline.chunks",
               "the zbv schedule places 2 virtual stages per rank (a V), got ", p.pipeline_chunks);
        break;
      default:
        ENSURE(p.pipeline_chunks == 1, "parallel.pipeline.chunks", "schedule ", Sv(schedule),
               " holds 1 stage per rank; virtual stages need schedule interleaved or zbv, got ",
               p.pipeline_chunks);
    }
  }
  if (!p.pipeline_layers_per_stage.empty()) {
    const int64_t stages = p.pipeline * p.pipeline_chunks;
    ENSURE(static_cast<int64_t>(p.pipeline_layers_per_stage.size()) == stages,
           "parallel.pipeline.layers_per_stage", "needs one entry per virtual stage (size ",
           p.pipeline, " x chunks ", p.pipeline_chunks, " = ", stages, "), got ",
           p.pipeline_layers_per_stage.size());
    for (size_t i = 0; i < p.pipeline_layers_per_stage.size(); ++i) {
      ENSURE(p.pipeline_layers_per_stage[i] >= 1,
             absl::StrCat("parallel.pipeline.layers_per_stage[", i, "]"),
             "every stage needs >= 1 layer, got ", p.pipeline_layers_per_stage[i]);
    }
  }
  ENSURE(p.sequence >= 1, DegreePath(ctx, "sequence"), "must be >= 1, got ", p.sequence);
  return absl::OkStatus();
}

absl::Status ValidateMemoryResourcesSample(const JobSpec& s, const YamlContext& ctx) {
  ENSURE(s.memory.device_budget >= 0, "memory.device_budget", "must be >= 0 (0: unlimited), got ",
         s.memory.device_budget);
  ENSURE(s.memory.host_budget >= 0, "memory.host_budget", "must be >= 0 (0: unlimited), got ",
         s.memory.host_budget);
  const MemorySpec& m = s.memory;
  ENSURE(m.nvme_budget >= 0, "memory.nvme_budget", "must be >= 0 (0: what the disk has), got ", m.nvme_budget);
  ENSURE(m.chunk_bytes == 0 || (m.chunk_bytes >= 4096 && m.chunk_bytes % 4096 == 0), "memory.chunk_bytes",
         "must be a positive multiple of 4 KiB (the NVMe alignment), got ", m.chunk_bytes, " bytes");
  for (auto [key, frac] : {std::pair{"memory.offload_param_frac", m.offload_param_frac},
                           std::pair{"memory.offload_optim_frac", m.offload_optim_frac}}) {
    ENSURE(frac >= 0 && frac <= 1, key, "must be in [0, 1], got ", frac);
    ENSURE(frac == 0 || m.placement == Placement::kStatic, key,
           "applies to placement static; placement auto places chunks by memory.device_budget");
    ENSURE(frac == 0 || !m.nvme_dir.empty(), key,
           "offloaded chunks live on NVMe on the CPU backend: set memory.nvme_dir");
  }
  ENSURE(m.nvme_budget == 0 || !m.nvme_dir.empty(), "memory.nvme_budget", "needs memory.nvme_dir");
  ENSURE(s.memory.checkpoint_every >= 1, "memory.activation_checkpointing.every",
         "must be >= 1 (1: every layer), got ", s.memory.checkpoint_every);
  ENSURE(s.memory.checkpoint_layers >= 0, "memory.activation_checkpointing.layers",
         "must be >= 1, got ", s.memory.checkpoint_layers);
  ENSURE(!ctx.Written("memory.activation_checkpointing.layers") || s.memory.checkpoint_layers >= 1,
         "memory.activation_checkpointing.layers", "must be >= 1, got ", s.memory.checkpoint_layers);
  const ResourcesSpec& r = s.resources;
  ENSURE(r.nodes >= 1, "resources.nodes", "must be >= 1, got ", r.nodes);
  ENSURE(r.ranks_per_node >= 1, "resources.ranks_per_node", "must be >= 1, got ",
         r.ranks_per_node);
  ENSURE(r.threads_per_rank >= 0, "resources.threads_per_rank",
         "must be >= 0 (0: cores / ranks_per_node), got ", r.threads_per_rank);
  ENSURE(s.sample.tokens >= 0, "sample.tokens", "must be >= 0 (0: no sample), got ",
         s.sample.tokens);
  ENSURE(s.sample.temperature > 0.0, "sample.temperature", "must be > 0, got ",
         s.sample.temperature);
  ENSURE(s.sample.top_k >= 0, "sample.top_k", "must be >= 0 (0: the whole vocabulary), got ",
         s.sample.top_k);
  return absl::OkStatus();
}

// Sequence parallelism of a GPT: how the windows cut (parallel/sequence/sequence_layout.h)
// and what it composes with.
absl::Status ValidateSequence(const JobSpec& s, const YamlContext& ctx) {
  const ParallelSpec& p = s.parallel;
  const std::string size = DegreePath(ctx, "sequence");
  const int64_t T = s.model.gpt.seq_len, S = p.sequence;
  if (S == 1) {
    for (const char* key : {"mode", "zigzag"}) {
      const std::string path = absl::StrCat("parallel.sequence.", key);
      ENSURE(!ctx.Written(path), path,
             "chooses how attention spans the ranks of a sequence group: it needs parallel.sequence.size > 1");
    }
    return absl::OkStatus();
  }
  const bool ring = p.sequence_mode == SequenceMode::kRing;
  ENSURE(ring || !ctx.Written("parallel.sequence.zigzag"), "parallel.sequence.zigzag",
         "balances ring attention's causal work; mode all_to_all attends over whole sequences and has no chunks");
  if (ring && p.sequence_zigzag) {
    ENSURE(T % (2 * S) == 0, size, "ring attention with zigzag chunks (two per rank) needs model.seq_len (", T,
           ") divisible by 2 x size; got size ", S, " (2 x ", S, " = ", 2 * S,
           "; or set parallel.sequence.zigzag: false)");
  } else {
    ENSURE(T % S == 0, size, "must divide model.seq_len (", T, "), got ", S);
  }
  if (!ring) {
    const int64_t heads = s.model.gpt.n_head / std::max<int64_t>(1, p.tensor);
    ENSURE(heads % S == 0, size, "all_to_all splits each rank's heads (model.n_head / parallel.tensor = ",
           s.model.gpt.n_head, " / ", p.tensor, " = ", heads, ") over the sequence ranks: size must divide ", heads,
           ", got ", S);
  }
  ENSURE(p.tensor == 1 || (p.tensor_mode == TensorMode::k1d && !p.tensor_sequence_parallel), size,
         "sequence parallelism composes with 1d tensor parallelism without its sequence_parallel; got "
         "parallel.tensor mode ", parallel::TensorModeName(p.tensor_mode),
         p.tensor_sequence_parallel ? " with sequence_parallel" : "");
  return absl::OkStatus();
}

absl::Status ValidateConsistency(const JobSpec& s, const YamlContext& ctx) {
  const TrainSpec& t = s.train;
  const ParallelSpec& p = s.parallel;
  ENSURE(t.global_batch % p.data == 0, "train.global_batch",
         "must be divisible by parallel.data (", p.data, "), got ", t.global_batch);
  const int64_t per_rank = t.global_batch / p.data;
  if (ctx.Written("train.micro_batch")) {
    ENSURE(per_rank % t.micro_batch == 0, "train.micro_batch",
           "must divide train.global_batch / parallel.data (", t.global_batch, " / ", p.data,
           " = ", per_rank, "), got ", t.micro_batch);
  }
  ENSURE(t.precision != Precision::kFp16 || p.pipeline == 1, "train.precision",
         "fp16 is not available with parallel.pipeline > 1 yet (the pipeline's loss seeds do not carry the dynamic "
         "loss scale); use bf16, which needs no loss scaling");
  // The 2D/2.5D/3D GEMMs (SUMMA, the 3D linear) have no mixed-precision form yet.
  ENSURE(t.precision == Precision::kFp32 || p.tensor == 1 || p.tensor_mode == TensorMode::k1d, "train.precision",
         Sv(PrecisionName(t.precision)), " is not available with parallel.tensor mode ",
         parallel::TensorModeName(p.tensor_mode), " (its GEMMs compute in fp32 only); use fp32 or mode 1d");
  if (!p.auto_plan) {
    const ResourcesSpec& r = s.resources;
    ENSURE(p.WorldSize() == r.WorldSize(), "parallel",
           "data x tensor x pipeline x sequence = ", p.data, " x ", p.tensor, " x ", p.pipeline,
           " x ", p.sequence, " = ", p.WorldSize(),
           " ranks, but resources.nodes x resources.ranks_per_node = ", r.nodes, " x ",
           r.ranks_per_node, " = ", r.WorldSize(), "; make the two products equal");
  }
  // Micro-batches per step: both keys written must agree; interleaving needs whole rounds.
  const std::string microbatches = ctx.Written("parallel.pipeline.microbatches")
                                       ? "parallel.pipeline.microbatches"
                                       : DegreePath(ctx, "pipeline");
  if (ctx.Written("parallel.pipeline.microbatches")) {
    ENSURE(per_rank % p.pipeline_microbatches == 0, microbatches,
           "must divide train.global_batch / parallel.data (", t.global_batch, " / ", p.data, " = ",
           per_rank, "), got ", p.pipeline_microbatches);
    ENSURE(p.pipeline_microbatches * t.micro_batch == per_rank, microbatches,
           "must be train.global_batch / (parallel.data x train.micro_batch) = ", per_rank, " / ",
           t.micro_batch, " = ", per_rank / std::max<int64_t>(1, t.micro_batch), " (or leave one of the two out), got ",
           p.pipeline_microbatches);
  }
  if (p.pipeline > 1 && p.pipeline_schedule == PipelineSchedule::kInterleaved) {
    ENSURE(p.pipeline_microbatches % p.pipeline == 0, microbatches,
           "the interleaved schedule runs micro-batches in rounds of the pipeline size: ",
           "micro-batches per step (", p.pipeline_microbatches, ") must be a multiple of ",
           p.pipeline);
  }
  if (p.pipeline > 1 && p.data > 1) {
    ENSURE(p.zero <= 2, "parallel.zero",
           "ZeRO 3 gathers each layer's parameters as the one executor of a rank reaches "
           "it, which a pipeline's interleaved micro-batches do not follow; with "
           "parallel.pipeline use zero 0, 1 or 2, got ", p.zero);
  }
  if (p.pipeline == 1) {
    for (const char* key : {"schedule", "chunks", "layers_per_stage"}) {
      const std::string path = absl::StrCat("parallel.pipeline.", key);
      ENSURE(!ctx.Written(path), path,
             "orders or splits the layers over pipeline stages: it needs parallel.pipeline.size > 1");
    }
  }
  if (s.model.kind == ModelSpec::Kind::kGpt) {
    const int64_t stages = p.pipeline * p.pipeline_chunks;
    if (p.pipeline > 1) {
      ENSURE(stages <= s.model.gpt.n_layer, DegreePath(ctx, "pipeline"),
             "pipeline stages x chunks (", p.pipeline, " x ", p.pipeline_chunks, " = ", stages,
             ") must be <= model.n_layer (", s.model.gpt.n_layer, "), one layer per stage at least");
    }
    if (!p.pipeline_layers_per_stage.empty()) {
      int64_t sum = 0;
      for (int64_t n : p.pipeline_layers_per_stage) sum += n;
      ENSURE(sum == s.model.gpt.n_layer, "parallel.pipeline.layers_per_stage",
             "must sum to model.n_layer (", s.model.gpt.n_layer, "), got ", sum);
    }
    if (absl::Status seq = ValidateSequence(s, ctx); !seq.ok()) return seq;
    // The grid was checked above (ValidateParallel).
    const absl::StatusOr<parallel::TensorGrid> grid = parallel::TensorGridOf(p.tensor_mode, p.tensor, p.tensor_depth);
    const graph::GptSplitDims dims{s.model.gpt.n_head, s.model.gpt.d_model, s.model.gpt.vocab, s.model.gpt.seq_len,
                                   t.micro_batch};
    if (grid.ok()) {
      for (const graph::GptSplitRule& rule :
           graph::GptSplitRules(p.tensor_mode, *grid, p.tensor, p.tensor_sequence_parallel, dims)) {
        if (!rule.ok()) return ctx.ErrorKey(rule.key, rule.Requirement(DegreePath(ctx, "tensor")));
      }
    }
  } else {
    ENSURE(p.tensor == 1, DegreePath(ctx, "tensor"),
           "tensor parallelism needs a GPT model (model.type: gpt): a graph file says nothing "
           "of how its tensors split; got ", p.tensor);
    ENSURE(p.sequence == 1, DegreePath(ctx, "sequence"),
           "sequence parallelism needs a GPT model (model.type: gpt): a graph file says nothing "
           "of which op is attention; got ", p.sequence);
  }
  return absl::OkStatus();
}

// Features a spec can describe that this build does not run: refused, so that no job
// silently trains something other than what it asked for. Each entry goes when its
// feature lands (and the test that it is refused becomes a test that it runs).
absl::Status ValidateBuilt(const JobSpec& s, const YamlContext& ctx) {
  const MemorySpec memory_defaults;
  const ParallelSpec& p = s.parallel;
  // GPU jobs: one rank on one GPU so far (its collectives over NCCL and the parallel
  // layouts' device paths are not wired yet); a build without nvcc has no CUDA at all.
  ENSURE(s.resources.device == DeviceKind::kCpu || kernels::CudaBackendBuilt(), "resources.device",
         "cuda: this build has no CUDA backend (it was built where no nvcc was found); use device: cpu");
  ENSURE(s.resources.device == DeviceKind::kCpu || s.resources.WorldSize() == 1, "resources.device",
         "cuda with ", s.resources.WorldSize(), " ranks is not available yet: GPU jobs train one rank on one "
         "GPU (data, tensor, pipeline and sequence parallelism over NCCL are not wired); use one rank or "
         "device: cpu");
  ENSURE(p.reduce_dtype == ReduceDType::kFp32 || p.zero != 3, "parallel.reduce_dtype",
         "bf16 is not available with ZeRO 3 yet (its per-micro-step reduce-scatters sum in fp32); use "
         "parallel.zero 0, 1 or 2");
  ENSURE(!p.auto_plan, "parallel",
         "auto is not available yet: the auto-parallel planner is not built; give the degrees "
         "as a map {data, zero, tensor, pipeline, sequence}");

  // Gemini pages one rank's model state between host memory and NVMe so far.
  const MemorySpec& m = s.memory;
  if (m.gemini()) {
    const char* key = m.placement == Placement::kAuto ? "memory.placement"
                      : !m.nvme_dir.empty()           ? "memory.nvme_dir"
                      : m.device_budget > 0           ? "memory.device_budget"
                                                      : "memory";
    ENSURE(s.resources.device == DeviceKind::kCpu, key,
           "Gemini chunk paging on resources.device cuda is not available yet (its host tier of pinned "
           "memory is not built); use device: cpu, or leave the Gemini keys out");
    ENSURE(p.WorldSize() == 1, key, "Gemini chunk paging with ", p.WorldSize(),
           " ranks is not available yet (chunks sharded over the data group as ZeRO 3, and tensor, pipeline "
           "and sequence parallelism over chunks, are not built); use one rank or leave the Gemini keys out");
    ENSURE(m.host_budget == 0, "memory.host_budget",
           "the host tier holds chunks for GPU jobs; on the CPU backend compute memory is host memory: "
           "give its size as memory.device_budget");
  }
  return absl::OkStatus();
  return absl::OkStatus();
}

#undef ENSURE

}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec, const YamlContext& ctx, Unbuilt unbuilt) {
  for (auto check : {ValidateTop, ValidateModel, ValidateData, ValidateTrain, ValidateParallel,
                     ValidateMemoryResourcesSample, ValidateConsistency}) {
    if (absl::Status status = check(spec, ctx); !status.ok()) return status;
  }
  return unbuilt == Unbuilt::kRefuse ? ValidateBuilt(spec, ctx) : absl::OkStatus();
}

}  // namespace colossal::config::internal
