// Tests of the job YAML -> JobSpec contract (job_spec.h): every field read back,
// defaults, each class of bad input with its exact message (key, line:column,
// suggestion), overrides, the ToYaml round trip, byte sizes, files, paths, and a parse
// of every job in configs/.
#include "runtime/config/job_spec.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/base/env.h"
#include "runtime/config/job_spec_testing.h"

namespace colossal::config {
namespace {

namespace fs = std::filesystem;
using namespace colossal::config::testing;  // kBase, Parse, ErrorOf, Replace
std::string TmpDir() {
  std::optional<std::string> dir = base::GetEnv(base::kEnvTestTmpDir);
  return dir ? *dir : fs::temp_directory_path().string();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

constexpr const char* kFull = R"(# every field, none at its default
name: full-job
run_dir: out/full
model: {type: gpt, n_layer: 8, n_head: 16, d_model: 128, seq_len: 64, vocab: 512,
        init_from: ckpt/step-100}
data: {train: corpus.txt, tokenizer: bytes, val_fraction: 0.1, shuffle: false}
train:
  steps: 1000
  global_batch: 64
  micro_batch: 4
  optimizer: {type: lamb, lr: 2.0e-3, betas: [0.8, 0.95], eps: 1.0e-7,
              weight_decay: 0.01, no_decay: [bias, ln_], trust_clip: 5.0}
  lr_schedule: {warmup: 100, decay: linear, min_lr: 2.0e-4}
  grad_clip: 0.5
  precision: bf16
  seed: 42
  max_restarts: 5
  checkpoint: {dir: ckpts, every: 250, keep: 2}
  val_every: 50
  val_batches: 4
  log_every: 10
parallel:
  data: 2
  zero: 2
  tensor: {size: 8, mode: 1d}  # (2d, 2.5d and 3d do not compose with sequence)
  pipeline: {size: 2, schedule: interleaved, microbatches: 8}
  sequence: {size: 2, mode: all_to_all}
memory:
  placement: auto
  device_budget: 8GiB
  host_budget: 1.5GB
  nvme_dir: /scratch/colossal
  activation_checkpointing: true
resources: {device: cuda, nodes: 8, ranks_per_node: 8, threads_per_rank: 2}
sample: {prompt: "And God said", tokens: 300, temperature: 0.8, top_k: 40}
)";

TEST_CASE("a full spec reads back every field") {
  JobSpec s = Parse(kFull);
  CHECK(s.source == "job.yaml");
  CHECK(s.name == "full-job");
  CHECK(s.run_dir == "out/full");
  CHECK(s.model.kind == ModelSpec::Kind::kGpt);
  CHECK(s.model.gpt.n_layer == 8);
  CHECK(s.model.gpt.n_head == 16);
  CHECK(s.model.gpt.d_model == 128);
  CHECK(s.model.gpt.seq_len == 64);
  CHECK(s.model.gpt.vocab == 512);
  CHECK(s.model.graph_path.empty());
  CHECK(s.model.init_from == "ckpt/step-100");
  CHECK(s.data.train == "corpus.txt");
  CHECK(s.data.tokenizer == "bytes");
  CHECK(s.data.val_fraction == 0.1);
  CHECK_FALSE(s.data.shuffle);
  CHECK(s.train.steps == 1000);
  CHECK(s.train.global_batch == 64);
  CHECK(s.train.micro_batch == 4);
  CHECK(s.train.AccumulationSteps(s.parallel.data) == 8);
  const OptimizerSpec& o = s.train.optimizer;
  CHECK(o.type == OptimizerType::kLamb);
  CHECK(o.lr == 2.0e-3);
  CHECK(o.beta1 == 0.8);
  CHECK(o.beta2 == 0.95);
  CHECK(o.eps == 1.0e-7);
  CHECK(o.weight_decay == 0.01);
  CHECK(o.no_decay == std::vector<std::string>{"bias", "ln_"});
  CHECK(o.trust_clip == 5.0);
  CHECK(s.train.lr_schedule.warmup == 100);
  CHECK(s.train.lr_schedule.decay == LrDecay::kLinear);
  CHECK(s.train.lr_schedule.min_lr == 2.0e-4);
  CHECK(s.train.grad_clip == 0.5);
  CHECK(s.train.precision == Precision::kBf16);
  CHECK(s.train.seed == 42);
  CHECK(s.train.max_restarts == 5);
  CHECK(s.train.checkpoint.dir == "ckpts");
  CHECK(s.train.checkpoint.every == 250);
  CHECK(s.train.checkpoint.keep == 2);
  CHECK(s.train.val_every == 50);
  CHECK(s.train.val_batches == 4);
  CHECK(s.train.log_every == 10);
  const ParallelSpec& p = s.parallel;
  CHECK_FALSE(p.auto_plan);
  CHECK(p.data == 2);
  CHECK(p.zero == 2);
  CHECK(p.tensor == 8);
  CHECK(p.tensor_mode == TensorMode::k1d);
  CHECK(p.tensor_depth == 1);
  CHECK(p.pipeline == 2);
  CHECK(p.pipeline_schedule == PipelineSchedule::kInterleaved);
  CHECK(p.pipeline_microbatches == 8);
  CHECK(p.sequence == 2);
  CHECK(p.sequence_mode == SequenceMode::kAllToAll);
  CHECK(p.WorldSize() == 64);
  CHECK(s.memory.placement == Placement::kAuto);
  CHECK(s.memory.device_budget == (int64_t{8} << 30));
  CHECK(s.memory.host_budget == 1500000000);
  CHECK(s.memory.nvme_dir == "/scratch/colossal");
  CHECK(s.memory.activation_checkpointing);
  CHECK(s.resources.device == DeviceKind::kCuda);
  CHECK(s.resources.nodes == 8);
  CHECK(s.resources.ranks_per_node == 8);
  CHECK(s.resources.threads_per_rank == 2);
  CHECK(s.resources.WorldSize() == 64);
  CHECK(s.sample.prompt == "And God said");
  CHECK(s.sample.tokens == 300);
  CHECK(s.sample.temperature == 0.8);
  CHECK(s.sample.top_k == 40);
}

TEST_CASE("defaults fill every field the YAML leaves out") {
  JobSpec s = Parse(kBase);
  CHECK(s.name == "tiny");
  CHECK(s.run_dir == "runs/tiny");
  CHECK(s.model.init_from.empty());
  CHECK(s.data.train == "data/tiny.txt");
  CHECK(s.data.tokenizer == "bytes");
  CHECK(s.data.val_fraction == 0.0);
  CHECK(s.data.shuffle);
  CHECK(s.train.micro_batch == 4);  // global_batch / parallel.data
  CHECK(s.train.optimizer.type == OptimizerType::kAdamW);
  CHECK(s.train.optimizer.eps == 1e-8);
  CHECK(s.train.optimizer == OptimizerSpec{});
  CHECK(s.train.lr_schedule == LrScheduleSpec{});
  CHECK(s.train.grad_clip == 0.0);
  CHECK(s.train.precision == Precision::kFp32);
  CHECK(s.train.seed == 1234);
  CHECK(s.train.max_restarts == 3);
  CHECK(s.train.checkpoint.dir == "runs/tiny/checkpoints");
  CHECK(s.train.checkpoint.every == 0);
  CHECK(s.train.checkpoint.keep == 3);
  CHECK(s.train.val_every == 0);
  CHECK(s.train.val_batches == 8);
  CHECK(s.train.log_every == 1);
  CHECK(s.parallel == ParallelSpec{});
  CHECK(s.memory == MemorySpec{});
  CHECK(s.resources == ResourcesSpec{});
  CHECK(s.sample == SampleSpec{});

  SECTION("eps defaults by optimizer") {
    CHECK(Parse(kBase, {"train.optimizer.type=lamb"}).train.optimizer.eps == 1e-6);
    CHECK(Parse(kBase, {"train.optimizer.type=lars"}).train.optimizer.eps == 1e-8);
    CHECK(Parse(kBase, {"train.optimizer={type: lamb, eps: 1e-5}"}).train.optimizer.eps == 1e-5);
  }
  SECTION("micro_batch is global_batch / parallel.data") {
    JobSpec d = Parse(kBase, {"parallel.data=2", "resources.ranks_per_node=2"});
    CHECK(d.train.micro_batch == 2);
    CHECK(d.train.AccumulationSteps(2) == 1);
  }
  SECTION("checkpoint.dir follows run_dir") {
    CHECK(Parse(kBase, {"run_dir=/tmp/r/"}).train.checkpoint.dir == "/tmp/r/checkpoints");
  }
  SECTION("empty sections keep their defaults") {
    JobSpec e = Parse(std::string(kBase) + "memory:\nsample: {}\n");
    CHECK(e.memory == MemorySpec{});
    CHECK(e.sample == SampleSpec{});
  }
}

TEST_CASE("graph models, parallel: auto and the degree shorthands") {
  JobSpec g = Parse("name: g\nmodel: {graph: m.graph.yaml, init_from: w.safetensors}\n"
                    "data: {train: t.txt}\ntrain: {steps: 1, global_batch: 1}\n");
  CHECK(g.model.kind == ModelSpec::Kind::kGraph);
  CHECK(g.model.graph_path == "m.graph.yaml");
  CHECK(g.model.init_from == "w.safetensors");

  JobSpec a = Parse(std::string(kBase) + "parallel: auto\nresources: {ranks_per_node: 8}\n");
  CHECK(a.parallel.auto_plan);
  CHECK(a.parallel.WorldSize() == 1);  // the planner chooses; no world-size check

  JobSpec d = Parse(std::string(kBase) +
                    "parallel: {tensor: 2, pipeline: 2, sequence: 2}\n"
                    "resources: {ranks_per_node: 8}\n");
  CHECK(d.parallel.tensor == 2);
  CHECK(d.parallel.tensor_mode == TensorMode::k1d);
  CHECK(d.parallel.pipeline == 2);
  CHECK(d.parallel.pipeline_schedule == PipelineSchedule::k1f1b);
  CHECK(d.parallel.sequence == 2);
  CHECK(d.parallel.sequence_mode == SequenceMode::kRing);
}

TEST_CASE("env: a map of variable names to strings, round-tripped") {
  auto spec = ParseJobSpec(std::string(kBase) + "env: {NCCL_DEBUG: INFO, MY_FLAG: 1}\n", "job.yaml");
  INFO(spec.status().message());
  REQUIRE(spec.ok());
  CHECK(spec->env == std::map<std::string, std::string>{{"MY_FLAG", "1"}, {"NCCL_DEBUG", "INFO"}});
  auto again = ParseJobSpec(ToYaml(*spec), "again.yaml");
  REQUIRE(again.ok());
  CHECK(again->env == spec->env);
  CHECK_THAT(ErrorOf(std::string(kBase) + "env: {1BAD: x}\n"),
             Catch::Contains("env") && Catch::Contains("not an environment variable name"));
  CHECK_THAT(ErrorOf(std::string(kBase) + "env: [a]\n"), Catch::Contains("expected a map"));
  CHECK_THAT(ErrorOf(std::string(kBase) + "env: {A: [1]}\n"), Catch::Contains("env.A: expected a string"));
}

TEST_CASE("malformed YAML and a top level that is not a map") {
  CHECK(ErrorOf("name: [a, b\nmodel: x\n") ==
        "job.yaml:2:6: invalid YAML: end of sequence flow not found");
  CHECK(ErrorOf("name: a\n\tmodel: x\n").rfind("job.yaml:2:", 0) == 0);
  CHECK(ErrorOf("- a\n- b\n") ==
        "job.yaml:1:1: the job must be a map of keys (name, model, data, train, parallel, "
        "memory, resources, sample, env), got a list");
  CHECK(ErrorOf("") ==
        "job.yaml: the job must be a map of keys (name, model, data, train, parallel, memory, "
        "resources, sample, env), got nothing (null)");
  CHECK(ErrorOf(std::string(kBase) + "---\nname: other\n") ==
        "job.yaml:15:1: a job file holds one YAML document; found a second one (after '---')");
}

TEST_CASE("unknown keys name the key, its line:column and the nearest known key") {
  CHECK(ErrorOf(std::string(kBase) + "  micro_bach: 2\n") ==
        "job.yaml:14:3: train.micro_bach: unknown key 'micro_bach'; did you mean 'micro_batch'?");
  CHECK(ErrorOf(Replace(kBase, "train:\n", "trian:\n")) ==
        "job.yaml:11:1: trian: unknown key 'trian'; did you mean 'train'?");
  CHECK(ErrorOf(Replace(kBase, "  n_layer: 2", "  n_layers: 2")) ==
        "job.yaml:4:3: model.n_layers: unknown key 'n_layers'; did you mean 'n_layer'?");
  CHECK(ErrorOf(std::string(kBase) + "  optimizer: {type: lamb, learning_rate: 1}\n") ==
        "job.yaml:14:27: train.optimizer.learning_rate: unknown key 'learning_rate'; expected "
        "one of type, lr, betas, eps, weight_decay, no_decay, trust_clip, momentum, trust_coef, "
        "nesterov");
  CHECK(ErrorOf(std::string(kBase) + "parallel: {tensor: {size: 4, mod: 2d}}\n") ==
        "job.yaml:14:30: parallel.tensor.mod: unknown key 'mod'; did you mean 'mode'?");
  CHECK(ErrorOf(std::string(kBase) + "  Steps: 3\n") ==
        "job.yaml:14:3: train.Steps: unknown key 'Steps'; did you mean 'steps'?");
  CHECK(ErrorOf(std::string(kBase) + "  steps: 20\n") ==
        "job.yaml:14:3: train.steps: duplicate key (first written at job.yaml:12:3); write each "
        "key once");
  CHECK(ErrorOf("name: g\nmodel: {graph: m.yaml, n_layer: 2}\n") ==
        "job.yaml:2:33: model.n_layer: not used with model.graph (the graph file gives the "
        "model); remove it, or remove model.graph");
}

TEST_CASE("wrong types name the key, where, what was found and what is expected") {
  const std::string b = kBase;
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: ten")) ==
        "job.yaml:12:10: train.steps: expected an integer, got 'ten'");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: 1.5")) ==
        "job.yaml:12:10: train.steps: expected an integer, got the non-integer number 1.5");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: \"10\"")) ==
        "job.yaml:12:10: train.steps: expected an integer, got the string \"10\" (a number is "
        "written without quotes)");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: true")) ==
        "job.yaml:12:10: train.steps: expected an integer, got the boolean 'true'");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: [10]")) ==
        "job.yaml:12:10: train.steps: expected an integer, got a list");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps:")) ==
        "job.yaml:12:3: train.steps: expected an integer, got nothing (null)");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: 99999999999999999999")) ==
        "job.yaml:12:10: train.steps: integer 99999999999999999999 is out of range");
  CHECK(ErrorOf(Replace(b, "data:\n  train: data/tiny.txt", "data: [data/tiny.txt]")) ==
        "job.yaml:9:7: data: expected a map {train: FILE, tokenizer, val_fraction}, got a list");
  CHECK(ErrorOf(b + "  optimizer: adamw\n") ==
        "job.yaml:14:14: train.optimizer: expected a map {type, lr, betas, ...}, got 'adamw'");
  CHECK(ErrorOf(b + "  optimizer: {lr: fast}\n") ==
        "job.yaml:14:19: train.optimizer.lr: expected a number, got 'fast'");
  CHECK(ErrorOf(b + "  optimizer: {lr: .inf}\n") ==
        "job.yaml:14:19: train.optimizer.lr: expected a number, got '.inf'");
  CHECK(ErrorOf(b + "  optimizer: {betas: [0.9]}\n") ==
        "job.yaml:14:22: train.optimizer.betas: expected a list of two numbers [beta1, beta2], "
        "got a list of 1");
  CHECK(ErrorOf(b + "  optimizer: {betas: [0.9, x]}\n") ==
        "job.yaml:14:28: train.optimizer.betas[1]: expected a number, got 'x'");
  CHECK(ErrorOf(b + "  optimizer: {no_decay: bias}\n") ==
        "job.yaml:14:25: train.optimizer.no_decay: expected a list of strings such as [a, b], "
        "got 'bias'");
  CHECK(ErrorOf(b + "  optimizer: {type: adam}\n") ==
        "job.yaml:14:21: train.optimizer.type: unknown value 'adam'; did you mean 'adamw'? (one "
        "of adamw|lamb|lars|sgd)");
  CHECK(ErrorOf(b + "  precision: fp8\n") ==
        "job.yaml:14:14: train.precision: unknown value 'fp8'; expected one of fp32|bf16|fp16");
  CHECK(ErrorOf(b + "  seed: -1\n") ==
        "job.yaml:14:9: train.seed: expected a non-negative integer, got -1");
  CHECK(ErrorOf(Replace(b, "  train: data/tiny.txt", "  train: data/tiny.txt\n  shuffle: yes")) ==
        "job.yaml:11:12: data.shuffle: expected true or false, got 'yes'");
  CHECK(ErrorOf(b + "parallel: everything\n") ==
        "job.yaml:14:11: parallel: expected 'auto' or a map {data, zero, tensor, pipeline, "
        "sequence}, got 'everything'");
  CHECK(ErrorOf(b + "parallel: {tensor: [4]}\n") ==
        "job.yaml:14:20: parallel.tensor: expected an integer or a map {size, mode: "
        "1d|2d|2.5d|3d, depth, sequence_parallel}, got a list");
  CHECK(ErrorOf(b + "parallel: {tensor: {size: 4, mode: 2D}}\n") ==
        "job.yaml:14:36: parallel.tensor.mode: unknown value '2D'; did you mean '2d'? (one of "
        "1d|2d|2.5d|3d)");
  CHECK(ErrorOf(b + "memory: {device_budget: lots}\n") ==
        "job.yaml:14:25: memory.device_budget: expected a byte size such as 8GiB, 512MiB, 1.5GB "
        "or 1024, got 'lots'");
  CHECK(ErrorOf(Replace(b, "  train: data/tiny.txt", "  train: data/tiny.txt\n  tokenizer: byte")) ==
        "job.yaml:11:14: data.tokenizer: unknown value 'byte'; did you mean 'bytes'? (one of "
        "bytes)");
  CHECK(ErrorOf(Replace(b, "steps: 10", "steps: |\n    ten\n    steps")) ==
        "job.yaml:12:10: train.steps: expected an integer, got the string \"ten\\nsteps\\n\" (a "
        "number is written without quotes)");
  CHECK(ErrorOf(b + "resources: {device: gpu}\n") ==
        "job.yaml:14:21: resources.device: unknown value 'gpu'; write cuda for NVIDIA GPUs (one "
        "of cpu|cuda)");
  CHECK(ErrorOf(Replace(b, "name: tiny", "name: [tiny]")) ==
        "job.yaml:1:7: name: expected a string, got a list");
  CHECK(ErrorOf(Replace(b, "  type: gpt", "  type: llama")) ==
        "job.yaml:3:9: model.type: unknown value 'llama'; expected one of gpt");
}

TEST_CASE("required keys: absent keys are located at their section, or by the source") {
  CHECK(ErrorOf(Replace(kBase, "name: tiny\n", "")) ==
        "job.yaml: name: required key is missing; expected the job's name, e.g. name: gpt-small");
  CHECK(ErrorOf(Replace(kBase, "  global_batch: 4\n", "")) ==
        "job.yaml:11:1: train.global_batch: required key is missing; expected the sequences per "
        "optimizer step over all ranks, >= 1");
  CHECK(ErrorOf(Replace(kBase, "data:\n  train: data/tiny.txt\n", "")) ==
        "job.yaml: data.train: required key is missing; expected the path of the training text "
        "or token file");
  CHECK(ErrorOf(Replace(kBase, "  vocab: 256\n", "")) ==
        "job.yaml:2:1: model.vocab: required key is missing; expected an integer >= 1 (model: "
        "{type: gpt, n_layer, n_head, d_model, seq_len, vocab} or model: {graph: FILE})");
  CHECK(ErrorOf("name: x\ndata: {train: t}\ntrain: {steps: 1, global_batch: 1}\n") ==
        "job.yaml: model: required key is missing; expected {type: gpt, n_layer, n_head, "
        "d_model, seq_len, vocab} or {graph: FILE}");
}

struct BadCase {
  const char* yaml;      // appended to kBase, or a replacement "FROM=>TO" of it
  const char* message;   // the whole expected message
};

std::string Apply(const BadCase& c) {
  std::string text = c.yaml;
  size_t arrow = text.find("=>");
  if (arrow == std::string::npos) return std::string(kBase) + text;
  return Replace(kBase, text.substr(0, arrow), text.substr(arrow + 2));
}

TEST_CASE("out-of-range values") {
  const BadCase cases[] = {
      {"n_layer: 2=>n_layer: 0", "job.yaml:4:12: model.n_layer: must be >= 1, got 0"},
      {"n_head: 2=>n_head: -2", "job.yaml:5:11: model.n_head: must be >= 1, got -2"},
      {"d_model: 64=>d_model: 65",
       "job.yaml:6:12: model.d_model: must be a multiple of model.n_head (2), got 65"},
      {"seq_len: 32=>seq_len: 0", "job.yaml:7:12: model.seq_len: must be >= 1, got 0"},
      {"vocab: 256=>vocab: 100",
       "job.yaml:8:10: model.vocab: must be >= 256 with data.tokenizer: bytes (its vocabulary "
       "size), got 100"},
      {"steps: 10=>steps: 0", "job.yaml:12:10: train.steps: must be >= 1, got 0"},
      {"global_batch: 4=>global_batch: -4",
       "job.yaml:13:17: train.global_batch: must be >= 1, got -4"},
      {"  micro_batch: 0\n", "job.yaml:14:16: train.micro_batch: must be >= 1, got 0"},
      {"  optimizer: {lr: 0}\n", "job.yaml:14:19: train.optimizer.lr: must be > 0, got 0"},
      {"  optimizer: {betas: [0.9, 1.0]}\n",
       "job.yaml:14:28: train.optimizer.betas[1]: must be in [0, 1), got 1"},
      {"  optimizer: {betas: [-0.1, 0.9]}\n",
       "job.yaml:14:23: train.optimizer.betas[0]: must be in [0, 1), got -0.1"},
      {"  optimizer: {eps: 0}\n", "job.yaml:14:20: train.optimizer.eps: must be > 0, got 0"},
      {"  optimizer: {weight_decay: -0.01}\n",
       "job.yaml:14:29: train.optimizer.weight_decay: must be >= 0, got -0.01"},
      {"  optimizer: {type: adamw, nesterov: true}\n",
       "job.yaml:14:38: train.optimizer.nesterov: only sgd uses nesterov; adamw ignores it: "
       "remove the key"},
      {"  lr_schedule: {min_lr: 0.01}\n",
       "job.yaml:14:25: train.lr_schedule.min_lr: must be <= train.optimizer.lr (0.001), got "
       "0.01"},
      {"  lr_schedule: {warmup: 10}\n",
       "job.yaml:14:25: train.lr_schedule.warmup: must be less than train.steps (10), got 10"},
      {"  grad_clip: -1\n",
       "job.yaml:14:14: train.grad_clip: must be >= 0 (0: no clipping), got -1"},
      {"  max_restarts: -1\n", "job.yaml:14:17: train.max_restarts: must be >= 0, got -1"},
      {"  checkpoint: {every: -1}\n",
       "job.yaml:14:23: train.checkpoint.every: must be >= 0 (0: only at the end), got -1"},
      {"  checkpoint: {keep: -2}\n",
       "job.yaml:14:22: train.checkpoint.keep: must be >= 0 (0: keep all), got -2"},
      {"train: data/tiny.txt=>train: data/tiny.txt\n  val_fraction: 0.5",
       "job.yaml:11:17: data.val_fraction: must be in [0, 0.5), got 0.5"},
      {"parallel: {zero: 4}\n", "job.yaml:14:18: parallel.zero: must be 0, 1, 2 or 3, got 4"},
      {"parallel: {data: 0}\n", "job.yaml:14:18: parallel.data: must be >= 1, got 0"},
      {"parallel: {tensor: 0}\n", "job.yaml:14:20: parallel.tensor: must be >= 1, got 0"},
      {"parallel: {pipeline: {size: -1}}\n",
       "job.yaml:14:29: parallel.pipeline.size: must be >= 1, got -1"},
      {"sample: {temperature: 0}\n", "job.yaml:14:23: sample.temperature: must be > 0, got 0"},
      {"resources: {nodes: 0}\n", "job.yaml:14:20: resources.nodes: must be >= 1, got 0"},
      {"memory: {host_budget: -5}\n",
       "job.yaml:14:23: memory.host_budget: must be >= 0 (0: unlimited), got -5"},
      {"name: tiny=>name: my job", "job.yaml:1:7: name: must be letters, digits, '.', '_' or "
                                   "'-' (it names the run directory), got 'my job'"},
  };
  for (const BadCase& c : cases) {
    INFO(c.yaml);
    CHECK(ErrorOf(Apply(c)) == c.message);
  }
}

TEST_CASE("inconsistent combinations show the numbers") {
  const BadCase cases[] = {
      {"global_batch: 4=>global_batch: 6\nparallel: {data: 4}\nresources: {ranks_per_node: 4}",
       "job.yaml:13:17: train.global_batch: must be divisible by parallel.data (4), got 6"},
      {"global_batch: 4=>global_batch: 64\n  micro_batch: 5\nparallel: {data: 2}\n"
       "resources: {ranks_per_node: 2}",
       "job.yaml:14:16: train.micro_batch: must divide train.global_batch / parallel.data "
       "(64 / 2 = 32), got 5"},
      {"parallel: {data: 2, tensor: 2, pipeline: 2}\nresources: {nodes: 1, ranks_per_node: 4}\n",
       "job.yaml:14:1: parallel: data x tensor x pipeline x sequence = 2 x 2 x 2 x 1 = 8 ranks, "
       "but resources.nodes x resources.ranks_per_node = 1 x 4 = 4; make the two products equal"},
      {"parallel: {tensor: {size: 8, mode: 2d}}\nresources: {ranks_per_node: 8}\n",
       "job.yaml:14:27: parallel.tensor.size: mode 2d needs a square size (1, 4, 9, 16, ...), "
       "got 8"},
      {"parallel: {tensor: {size: 6, mode: 2.5d, depth: 2}}\nresources: {ranks_per_node: 6}\n",
       "job.yaml:14:27: parallel.tensor.size: mode 2.5d needs size = depth x q^2 (depth 2: 2, 8, "
       "18, ...), got 6"},
      {"parallel: {tensor: {size: 4, mode: 3d}}\nresources: {ranks_per_node: 4}\n",
       "job.yaml:14:27: parallel.tensor.size: mode 3d needs a cube size (1, 8, 27, 64, ...), "
       "got 4"},
      {"parallel: {tensor: {size: 4, mode: 2d, depth: 2}}\nresources: {ranks_per_node: 4}\n",
       "job.yaml:14:47: parallel.tensor.depth: only mode 2.5d uses depth, got depth 2 with mode "
       "2d"},
      {"parallel: {pipeline: 3}\nresources: {ranks_per_node: 3}\n",
       "job.yaml:14:22: parallel.pipeline: pipeline stages x chunks (3 x 1 = 3) must be <= "
       "model.n_layer (2), one layer per stage at least"},
      {"parallel: {sequence: {size: 3, mode: all_to_all}}\nresources: {ranks_per_node: 3}\n",
       "job.yaml:14:29: parallel.sequence.size: must divide model.seq_len (32), got 3"},
      {"  precision: bf16\nparallel: {tensor: {size: 4, mode: 2d}}\nresources: {ranks_per_node: 4}\n",
       "job.yaml:14:14: train.precision: bf16 is not available with parallel.tensor mode 2d (its GEMMs "
       "compute in fp32 only); use fp32 or mode 1d"},
      {"  loss_scale: {initial: 1024}\n",
       "job.yaml:14:25: train.loss_scale.initial: applies to precision fp16 only (bf16 and fp32 need no "
       "loss scaling), got precision fp32"},
      {"  precision: fp16\n  loss_scale: {initial: 0}\n",
       "job.yaml:15:25: train.loss_scale.initial: must be > 0, got 0"},
      {"  precision: fp16\n  loss_scale: {growth_interval: 0}\n",
       "job.yaml:15:33: train.loss_scale.growth_interval: must be >= 1, got 0"},
      {"  precision: fp16\n  loss_scale: {initial: 8, min: 16}\n",
       "job.yaml:15:33: train.loss_scale.min: must be > 0 and <= train.loss_scale.initial (8), got 16"},
  };
  for (const BadCase& c : cases) {
    INFO(c.yaml);
    CHECK(ErrorOf(Apply(c)) == c.message);
  }
  // The valid counterparts.
  CHECK(Parse(std::string(kBase) + "  precision: fp16\nresources: {device: cuda}\n")
            .train.precision == Precision::kFp16);
  CHECK(Parse(std::string(kBase) + "  precision: bf16\n").train.precision == Precision::kBf16);
  const JobSpec fp16 = Parse(std::string(kBase) + "  precision: fp16\n  loss_scale: {initial: 1024, growth_interval: 50, min: 2}\n");
  CHECK(fp16.train.loss_scale == LossScaleSpec{1024, 50, 2});
  CHECK(Parse(std::string(kBase) + "  precision: fp16\n").train.loss_scale == LossScaleSpec{});
  CHECK(Parse(std::string(kBase) +
              "parallel: {tensor: {size: 8, mode: 2.5d, depth: 2}}\nresources: {nodes: 2, "
              "ranks_per_node: 4}\n")
            .parallel.tensor == 8);
  CHECK(Parse(std::string(kBase) + "parallel: {tensor: {size: 8, mode: 3d}}\n"
                                   "resources: {ranks_per_node: 8}\n")
            .parallel.tensor_mode == TensorMode::k3d);
  // 2d on 3 x 3: heads, vocabulary and micro-batch multiples of 3.
  const std::string three = Replace(
      Replace(Replace(Replace(kBase, "n_head: 2", "n_head: 3"), "d_model: 64", "d_model: 48"),
              "vocab: 256", "vocab: 258"),
      "global_batch: 4", "global_batch: 9\n  micro_batch: 3");
  CHECK(Parse(three + "parallel: {tensor: {size: 9, mode: 2d}}\nresources: {ranks_per_node: 9}\n")
            .parallel.tensor_mode == TensorMode::k2d);
}

TEST_CASE("overrides apply before validation and are named in errors") {
  SECTION("valid overrides") {
    JobSpec s = Parse(kBase, {"train.steps=20", "train.optimizer.betas=[0.9, 0.95]",
                              "memory.device_budget=512MiB", "sample={prompt: hi, tokens: 5}",
                              " train.steps = 30 "});
    CHECK(s.train.steps == 30);  // the later override wins
    CHECK(s.train.optimizer.beta1 == 0.9);
    CHECK(s.train.optimizer.beta2 == 0.95);
    CHECK(s.memory.device_budget == (int64_t{512} << 20));
    CHECK(s.sample.prompt == "hi");
    CHECK(s.sample.tokens == 5);

    JobSpec g = Parse(kBase, {"model={graph: g.yaml}"});
    CHECK(g.model.kind == ModelSpec::Kind::kGraph);
    CHECK(g.model.graph_path == "g.yaml");

    JobSpec a = Parse(std::string(kBase) + "parallel: {data: 1}\n", {"parallel=auto"});
    CHECK(a.parallel.auto_plan);
  }
  SECTION("unknown keys suggest the nearest and name the override") {
    CHECK(ErrorOf(kBase, {"train.step=10"}) ==
          "--set 'train.step=10': train.step: unknown key 'step'; did you mean 'steps'?");
    CHECK(ErrorOf(kBase, {"trainn.steps=10"}) ==
          "--set 'trainn.steps=10': trainn: unknown key 'trainn'; did you mean 'train'?");
    CHECK(ErrorOf(kBase, {"train.optimizer.lrr=1"}) ==
          "--set 'train.optimizer.lrr=1': train.optimizer.lrr: unknown key 'lrr'; did you mean "
          "'lr'?");
  }
  SECTION("bad values name the override") {
    CHECK(ErrorOf(kBase, {"train.steps=abc"}) ==
          "--set 'train.steps=abc': train.steps: expected an integer, got 'abc'");
    CHECK(ErrorOf(kBase, {"train.optimizer.betas=[0.9, 2]"}) ==
          "--set 'train.optimizer.betas=[0.9, 2]': train.optimizer.betas[1]: must be in [0, 1), "
          "got 2");
    CHECK(ErrorOf(kBase, {"train.steps=0"}) ==
          "--set 'train.steps=0': train.steps: must be >= 1, got 0");
  }
  SECTION("malformed overrides") {
    CHECK(ErrorOf(kBase, {"train.steps"}) ==
          "--set 'train.steps': no '=' found; expected KEY.PATH=VALUE such as train.steps=10");
    CHECK(ErrorOf(kBase, {"=5"}) ==
          "--set '=5': empty key; expected KEY.PATH=VALUE such as train.steps=10");
    CHECK(ErrorOf(kBase, {"train..steps=5"}) ==
          "--set 'train..steps=5': key 'train..steps' has an empty part; expected "
          "KEY.PATH=VALUE such as train.steps=10");
    CHECK(ErrorOf(kBase, {"train.steps="}) ==
          "--set 'train.steps=': no value after '='; expected KEY.PATH=VALUE such as "
          "train.steps=10");
    CHECK(ErrorOf(kBase, {"train.steps=[1, 2"}).rfind(
              "--set 'train.steps=[1, 2': value '[1, 2' is not valid YAML (", 0) == 0);
    CHECK(ErrorOf(kBase, {"name.first=x"}) ==
          "--set 'name.first=x': name is 'tiny', not a map, so it has no key 'first'; set "
          "name={...} instead");
    CHECK(ErrorOf(kBase, {"train.steps=\"a\tb\""}) ==
          "--set 'train.steps=\"a\\tb\"': train.steps: expected an integer, got the string "
          "\"a\\tb\" (a number is written without quotes)");
    CHECK(ErrorOf(kBase, {"train steps=3"}) ==
          "--set 'train steps=3': key 'train steps' contains ' '; keys are letters, digits, '_' "
          "and '-' joined by '.'");
  }
}

void CheckRoundTrip(const JobSpec& spec) {
  std::string yaml = ToYaml(spec);
  INFO(yaml);
  absl::StatusOr<JobSpec> again = ParseJobSpec(yaml, spec.source, {}, Unbuilt::kAccept);
  INFO(again.status().message());
  REQUIRE(again.ok());
  // Field by field first (a failure names the part that differs), then the whole.
  CHECK(again->name == spec.name);
  CHECK(again->run_dir == spec.run_dir);
  CHECK(again->model == spec.model);
  CHECK(again->data == spec.data);
  CHECK(again->train.optimizer == spec.train.optimizer);
  CHECK(again->train.lr_schedule == spec.train.lr_schedule);
  CHECK(again->train.checkpoint == spec.train.checkpoint);
  CHECK(again->train == spec.train);
  CHECK(again->parallel == spec.parallel);
  CHECK(again->memory == spec.memory);
  CHECK(again->resources == spec.resources);
  CHECK(again->sample == spec.sample);
  CHECK(*again == spec);
  CHECK(ToYaml(*again) == yaml);  // canonical: a fixed point
}

TEST_CASE("ToYaml writes every field and reads back to the same spec") {
  CheckRoundTrip(Parse(kFull));
  CheckRoundTrip(Parse(kBase));
  CheckRoundTrip(Parse(kBase, {"train.optimizer={type: sgd, lr: 0.1, momentum: 0.5, "
                               "nesterov: true}"}));
  CheckRoundTrip(Parse(kBase, {"train.optimizer={type: lars, trust_coef: 0.02}"}));
  CheckRoundTrip(Parse(kBase, {"model={graph: m.graph.yaml}"}));
  CheckRoundTrip(Parse(kBase, {"parallel=auto", "resources.ranks_per_node=4"}));
  // Strings that look like numbers, booleans or null, and awkward characters.
  CheckRoundTrip(Parse(kBase, {"name=123", "sample.prompt=\"yes\"", "data.train=\"null\"",
                               "memory.nvme_dir=\"a: b # c\"",
                               "train.optimizer.no_decay=[\"true\", \"1.5\"]"}));
  JobSpec odd = Parse(kBase);
  odd.sample.prompt = "line one\nline \"two\"\t'three'";
  odd.train.optimizer.lr = 1.0 / 3.0;
  odd.train.optimizer.weight_decay = 1e-300;
  odd.data.val_fraction = 0.1 + 0.2;
  odd.memory.device_budget = (int64_t{3} << 30) + 1;
  odd.memory.host_budget = int64_t{5} << 40;
  odd.train.seed = 18446744073709551615ull;
  CheckRoundTrip(odd);

  std::string yaml = ToYaml(Parse(kFull));
  CHECK(yaml.find("device_budget: 8GiB") != std::string::npos);
  CHECK(yaml.find("betas: [0.8, 0.95]") != std::string::npos);
  CHECK(yaml.find("sequence: {size: 2, mode: all_to_all}") != std::string::npos);
}

TEST_CASE("ParseByteSize") {
  CHECK(ParseByteSize("8GiB").value() == int64_t{8} << 30);
  CHECK(ParseByteSize("512MiB").value() == int64_t{512} << 20);
  CHECK(ParseByteSize("1.5GB").value() == 1500000000);
  CHECK(ParseByteSize("1024").value() == 1024);
  CHECK(ParseByteSize("0").value() == 0);
  CHECK(ParseByteSize("4 KiB").value() == 4096);
  CHECK(ParseByteSize("10kb").value() == 10000);
  CHECK(ParseByteSize("2TiB").value() == int64_t{2} << 40);
  CHECK(ParseByteSize("7B").value() == 7);
  CHECK(ParseByteSize("0.5KiB").value() == 512);
  CHECK(ParseByteSize("0.1GiB").value() == 107374182);  // rounded to the nearest byte
  for (const char* bad : {"", "GiB", "8GiBs", "8 G", "-1GiB", "1.5.2GB", "1e9", "ten"}) {
    INFO(bad);
    absl::StatusOr<int64_t> size = ParseByteSize(bad);
    REQUIRE_FALSE(size.ok());
    CHECK(size.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(size.status().message()).find("is not a byte size") != std::string::npos);
  }
  CHECK(ParseByteSize("9999999999TiB").status().message() ==
        "'9999999999TiB' is too large a byte size");
  CHECK(ParseByteSize("99999999999999999999").status().message() ==
        "'99999999999999999999' is too large a byte size");
}

TEST_CASE("LoadJobSpec reads files and names them") {
  const std::string dir = TmpDir();
  const std::string path = dir + "/load_job.yaml";
  WriteFile(path, Replace(kBase, "steps: 10", "steps: 0"));
  absl::StatusOr<JobSpec> bad = LoadJobSpec(path);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == path + ":12:10: train.steps: must be >= 1, got 0");

  absl::StatusOr<JobSpec> good = LoadJobSpec(path, {"train.steps=5"});
  REQUIRE(good.ok());
  CHECK(good->train.steps == 5);
  CHECK(good->source == path);

  absl::StatusOr<JobSpec> missing = LoadJobSpec(dir + "/no_such_job.yaml");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(missing.status().message() == dir + "/no_such_job.yaml: job file does not exist");
  CHECK(LoadJobSpec(dir).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateJobFiles checks data.train, model.graph, model.init_from and memory.nvme_dir") {
  const std::string dir = TmpDir() + "/files";
  fs::create_directories(dir + "/ckpt");
  WriteFile(dir + "/train.txt", "In the beginning");
  WriteFile(dir + "/m.graph.yaml", "nodes: []");
  JobSpec spec = Parse(kBase, {"data.train=" + dir + "/train.txt"});
  CHECK(ValidateJobFiles(spec).ok());

  spec.model.init_from = dir + "/ckpt";  // a checkpoint directory
  CHECK(ValidateJobFiles(spec).ok());
  spec.model.init_from = dir + "/missing.safetensors";
  absl::Status init = ValidateJobFiles(spec);
  CHECK(init.code() == absl::StatusCode::kNotFound);
  CHECK(init.message() == "job.yaml: model.init_from: '" + dir +
                              "/missing.safetensors' does not exist; give the path of an "
                              "existing file or directory");
  spec.model.init_from.clear();

  spec.model.kind = ModelSpec::Kind::kGraph;
  spec.model.graph_path = dir + "/m.graph.yaml";
  CHECK(ValidateJobFiles(spec).ok());
  spec.model.graph_path = dir + "/nope.graph.yaml";
  absl::Status graph = ValidateJobFiles(spec);
  CHECK(graph.code() == absl::StatusCode::kNotFound);
  CHECK(std::string(graph.message()).find("model.graph: '" + dir + "/nope.graph.yaml'") !=
        std::string::npos);

  spec.data.train = "no/such/corpus.txt";
  absl::Status train = ValidateJobFiles(spec);
  CHECK(train.code() == absl::StatusCode::kNotFound);
  CHECK(std::string(train.message()).rfind("job.yaml: data.train: 'no/such/corpus.txt' does not "
                                           "exist (relative to ", 0) == 0);
  spec.data.train = dir;
  CHECK(ValidateJobFiles(spec).code() == absl::StatusCode::kInvalidArgument);
  spec.data.train = dir + "/train.txt";
  spec.model.kind = ModelSpec::Kind::kGpt;

  spec.memory.nvme_dir = dir + "/ckpt";  // an existing, writable directory
  CHECK(ValidateJobFiles(spec).ok());
  spec.memory.nvme_dir = dir + "/no-nvme";
  absl::Status nvme = ValidateJobFiles(spec);
  CHECK(nvme.code() == absl::StatusCode::kNotFound);
  CHECK(nvme.message() == "job.yaml: memory.nvme_dir: '" + dir + "/no-nvme' is not an existing directory; give one "
                          "for the chunk file");
  spec.memory.nvme_dir = dir + "/train.txt";
  CHECK(ValidateJobFiles(spec).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("ResolvePaths makes relative paths absolute against a directory") {
  JobSpec spec = Parse(kFull);
  spec.model.init_from = "../w/init.safetensors";
  ResolvePaths(spec, "/jobs/a");
  CHECK(spec.data.train == "/jobs/a/corpus.txt");
  CHECK(spec.model.init_from == "/jobs/w/init.safetensors");
  CHECK(spec.run_dir == "/jobs/a/out/full");
  CHECK(spec.train.checkpoint.dir == "/jobs/a/ckpts");
  CHECK(spec.memory.nvme_dir == "/scratch/colossal");  // already absolute
  CHECK(spec.model.graph_path.empty());                // unset stays unset

  JobSpec graph = Parse(kBase, {"model={graph: g/m.yaml}"});
  ResolvePaths(graph, "/w");
  CHECK(graph.model.graph_path == "/w/g/m.yaml");
  CHECK(graph.run_dir == "/w/runs/tiny");
  CHECK(graph.train.checkpoint.dir == "/w/runs/tiny/checkpoints");
  CHECK(graph.memory.nvme_dir.empty());
}

TEST_CASE("enum names are the YAML spellings") {
  CHECK(OptimizerTypeName(OptimizerType::kLamb) == "lamb");
  CHECK(PrecisionName(Precision::kBf16) == "bf16");
  CHECK(LrDecayName(LrDecay::kConstant) == "constant");
  CHECK(TensorModeName(TensorMode::k2p5d) == "2.5d");
  CHECK(PipelineScheduleName(PipelineSchedule::k1f1b) == "1f1b");
  CHECK(SequenceModeName(SequenceMode::kAllToAll) == "all_to_all");
  CHECK(PlacementName(Placement::kAuto) == "auto");
  CHECK(DeviceKindName(DeviceKind::kCuda) == "cuda");
}

// Bazel runs tests from the workspace's runfiles root, where //configs's files sit
// under configs/.
TEST_CASE("every job in configs/ parses and round-trips") {
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator("configs")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files == std::vector<std::string>{"configs/gpt-kjv.yaml", "configs/gpt-small.yaml",
                                            "configs/gpt2-124m.yaml"});
  for (const std::string& file : files) {
    INFO(file);
    absl::StatusOr<JobSpec> spec = LoadJobSpec(file);
    INFO(spec.status().message());
    REQUIRE(spec.ok());
    CHECK(spec->data.train == "data/kjv.txt");
    CHECK(spec->resources.device == DeviceKind::kCpu);
    CheckRoundTrip(*spec);
  }

  JobSpec kjv = LoadJobSpec("configs/gpt-kjv.yaml").value();
  CHECK(kjv.name == "gpt-kjv");
  CHECK(kjv.model.gpt == GptModelSpec{4, 4, 256, 128, 256});
  CHECK(kjv.data.val_fraction == 0.05);
  CHECK(kjv.train.steps == 500);
  CHECK(kjv.train.global_batch == 32);
  CHECK(kjv.train.micro_batch == 32);
  CHECK(kjv.train.optimizer.type == OptimizerType::kLamb);
  CHECK(kjv.train.optimizer.lr == 1e-2);
  CHECK(kjv.train.optimizer.eps == 1e-6);
  CHECK(kjv.train.optimizer.weight_decay == 0.1);
  CHECK(kjv.train.optimizer.no_decay == std::vector<std::string>{"bias", "ln_"});
  CHECK(kjv.train.lr_schedule.decay == LrDecay::kCosine);
  CHECK(kjv.train.lr_schedule.warmup > 0);
  CHECK(kjv.train.grad_clip == 1.0);
  CHECK(kjv.train.checkpoint.every == 100);
  CHECK(kjv.train.checkpoint.keep == 2);
  CHECK(kjv.train.checkpoint.dir == "runs/gpt-kjv/checkpoints");
  CHECK(kjv.train.val_every == 100);
  CHECK(kjv.sample.prompt == "And God said");
  CHECK(kjv.sample.tokens == 300);
  CHECK(kjv.sample.temperature == 0.8);
  CHECK(kjv.sample.top_k == 40);

  JobSpec small = LoadJobSpec("configs/gpt-small.yaml").value();
  CHECK(small.model.gpt == GptModelSpec{6, 6, 384, 256, 256});
  CHECK(small.train.global_batch == 8);
  CHECK(small.train.optimizer.type == OptimizerType::kAdamW);

  JobSpec gpt2 = LoadJobSpec("configs/gpt2-124m.yaml").value();
  CHECK(gpt2.model.gpt == GptModelSpec{12, 12, 768, 64, 50257});
  CHECK(gpt2.train.global_batch == 4);
  CHECK(gpt2.train.optimizer.type == OptimizerType::kAdamW);
  CHECK(gpt2.train.optimizer.lr == 6e-4);
}

}  // namespace
}  // namespace colossal::config
