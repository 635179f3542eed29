// Job keys of the execution-order features: parallel.pipeline (micro-batches, schedules,
// chunks, layers per stage, and every rule they must meet), parallel.sequence (ring with
// or without zigzag chunks, all_to_all, and their divisibility and composition rules),
// memory.activation_checkpointing and model.attention — each parsed, defaulted, round-tripped through ToYaml, and each bad
// value refused with its exact message (key, line:column).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "runtime/config/job_spec.h"
#include "runtime/config/job_spec_testing.h"

namespace colossal::config {
namespace {

using namespace colossal::config::testing;  // kBase, Parse, ErrorOf, Replace

TEST_CASE("pipeline keys: micro-batches, chunks and layers per stage") {
  const std::string b = Replace(Replace(kBase, "n_layer: 2", "n_layer: 4"), "global_batch: 4", "global_batch: 8");
  const std::string two = "resources: {ranks_per_node: 2}\n";
  // Micro-batches set the micro-batch and the other way round; a pipeline alone runs
  // micro-batches of one sequence.
  JobSpec m = Parse(b + "parallel: {pipeline: {size: 2, microbatches: 4}}\n" + two);
  CHECK(m.train.micro_batch == 2);
  CHECK(m.parallel.pipeline_chunks == 1);
  CHECK(Parse(b + "  micro_batch: 4\nparallel: {pipeline: 2}\n" + two).parallel.pipeline_microbatches == 2);
  JobSpec one = Parse(b + "parallel: {pipeline: 2}\n" + two);
  CHECK(one.train.micro_batch == 1);
  CHECK(one.parallel.pipeline_microbatches == 8);
  CHECK(Parse(b).parallel.pipeline_microbatches == 1);
  // Interleaved and zbv hold two virtual stages by default; layers per stage as given.
  JobSpec v = Parse(b + "parallel: {pipeline: {size: 2, schedule: zbv, layers_per_stage: [1, 1, 1, 1]}}\n" + two);
  CHECK(v.parallel.pipeline_schedule == PipelineSchedule::kZbv);
  CHECK(v.parallel.pipeline_chunks == 2);
  CHECK(v.parallel.pipeline_layers_per_stage == std::vector<int64_t>{1, 1, 1, 1});
  CHECK(Parse(ToYaml(v)) == v);
  CHECK(Parse(b + "parallel: {pipeline: {size: 2, schedule: zb-h1}}\n" + two).parallel.pipeline_schedule ==
        PipelineSchedule::kZbH1);
  struct Case {
    std::string yaml;  // appended to b
    const char* message;
  };
  const Case cases[] = {
      {"parallel: {pipeline: {size: 2, schedule: zb-h2}}\n" + two,
       "job.yaml:14:42: parallel.pipeline.schedule: unknown value 'zb-h2'; did you mean 'zb-h1'? "
       "(one of gpipe|1f1b|interleaved|zb-h1|zbv)"},
      {"parallel: {pipeline: {size: 2, microbatches: 3}}\n" + two,
       "job.yaml:14:46: parallel.pipeline.microbatches: must divide train.global_batch / "
       "parallel.data (8 / 1 = 8), got 3"},
      {"  micro_batch: 2\nparallel: {pipeline: {size: 2, microbatches: 2}}\n" + two,
       "job.yaml:15:46: parallel.pipeline.microbatches: must be train.global_batch / "
       "(parallel.data x train.micro_batch) = 8 / 2 = 4 (or leave one of the two out), got 2"},
      {"  micro_batch: 8\nparallel: {pipeline: {size: 2, schedule: interleaved}}\n" + two,
       "job.yaml:15:29: parallel.pipeline.size: the interleaved schedule runs micro-batches in rounds "
       "of the pipeline size: micro-batches per step (1) must be a multiple of 2"},
      {"parallel: {pipeline: {size: 2, schedule: interleaved, chunks: 1}}\n" + two,
       "job.yaml:14:63: parallel.pipeline.chunks: the interleaved schedule needs >= 2 virtual "
       "stages per rank, got 1"},
      {"parallel: {pipeline: {size: 2, chunks: 2}}\n" + two,
       "job.yaml:14:40: parallel.pipeline.chunks: schedule 1f1b holds 1 stage per rank; virtual "
       "stages need schedule interleaved or zbv, got 2"},
      {"parallel: {pipeline: {size: 2, schedule: zbv, chunks: 3}}\n" + two,
       "job.yaml:14:55: parallel.pipeline.chunks: the zbv schedule places 2 virtual stages per "
       "rank (a V), got 3"},
      {"parallel: {pipeline: {size: 4, schedule: interleaved}}\nresources: {ranks_per_node: 4}\n",
       "job.yaml:14:29: parallel.pipeline.size: pipeline stages x chunks (4 x 2 = 8) must be <= "
       "model.n_layer (4), one layer per stage at least"},
      {"parallel: {pipeline: {size: 2, layers_per_stage: [1, 2]}}\n" + two,
       "job.yaml:14:50: parallel.pipeline.layers_per_stage: must sum to model.n_layer (4), got 3"},
      {"parallel: {pipeline: {size: 2, layers_per_stage: [4]}}\n" + two,
       "job.yaml:14:50: parallel.pipeline.layers_per_stage: needs one entry per virtual stage "
       "(size 2 x chunks 1 = 2), got 1"},
      {"parallel: {pipeline: {size: 2, layers_per_stage: [4, 0]}}\n" + two,
       "job.yaml:14:54: parallel.pipeline.layers_per_stage[1]: every stage needs >= 1 layer, got 0"},
      {"parallel: {pipeline: {size: 2, layers_per_stage: [1, x]}}\n" + two,
       "job.yaml:14:54: parallel.pipeline.layers_per_stage[1]: expected an integer, got 'x'"},
      {"parallel: {pipeline: {layers_per_stage: [4]}}\n",
       "job.yaml:14:41: parallel.pipeline.layers_per_stage: orders or splits the layers over "
       "pipeline stages: it needs parallel.pipeline.size > 1"},
      {"parallel: {pipeline: {size: 1, schedule: gpipe}}\n",
       "job.yaml:14:42: parallel.pipeline.schedule: orders or splits the layers over pipeline "
       "stages: it needs parallel.pipeline.size > 1"},
      {"parallel: {data: 2, zero: 3, pipeline: 2}\nresources: {ranks_per_node: 4}\n",
       "job.yaml:14:27: parallel.zero: ZeRO 3 gathers each layer's parameters as the one "
       "executor of a rank reaches it, which a pipeline's interleaved micro-batches do not "
       "follow; with parallel.pipeline use zero 0, 1 or 2, got 3"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    CHECK(ErrorOf(b + c.yaml) == c.message);
  }
}

TEST_CASE("activation checkpointing: true, false, every k-th layer or the first N") {
  CHECK_FALSE(Parse(kBase).memory.activation_checkpointing);
  const JobSpec all = Parse(std::string(kBase) + "memory: {activation_checkpointing: true}\n");
  CHECK(all.memory.activation_checkpointing);
  CHECK(all.memory.checkpoint_every == 1);
  const JobSpec every = Parse(std::string(kBase) + "memory: {activation_checkpointing: {every: 2}}\n");
  CHECK(every.memory.activation_checkpointing);
  CHECK(every.memory.checkpoint_every == 2);
  const JobSpec first = Parse(std::string(kBase) + "memory: {activation_checkpointing: {layers: 1}}\n");
  CHECK(first.memory.checkpoint_layers == 1);
  for (const JobSpec& s : {all, every, first}) CHECK(Parse(ToYaml(s)) == s);
  CHECK(ErrorOf(std::string(kBase) + "memory: {activation_checkpointing: {every: 0}}\n") ==
        "job.yaml:14:44: memory.activation_checkpointing.every: must be >= 1 (1: every layer), got 0");
  CHECK(ErrorOf(std::string(kBase) + "memory: {activation_checkpointing: {every: 2, layers: 1}}\n") ==
        "job.yaml:14:55: memory.activation_checkpointing.layers: give either every (every k-th "
        "layer) or layers (the first N of each stage), not both");
  CHECK(ErrorOf(std::string(kBase) + "memory: {activation_checkpointing: {evry: 2}}\n") ==
        "job.yaml:14:37: memory.activation_checkpointing.evry: unknown key 'evry'; did you mean 'every'?");
}

TEST_CASE("model.attention: auto picks the blockwise kernel from its measured crossover") {
  CHECK(Parse(kBase).model.gpt.attention == "auto");
  CHECK_FALSE(Parse(kBase).model.gpt.BlockAttention());  // seq_len 32
  const JobSpec block = Parse(Replace(kBase, "vocab: 256", "vocab: 256\n  attention: block"));
  CHECK(block.model.gpt.BlockAttention());
  CHECK(Parse(ToYaml(block)) == block);
  CHECK(Parse(Replace(kBase, "seq_len: 32", "seq_len: 8192")).model.gpt.BlockAttention());
  CHECK_FALSE(Parse(Replace(kBase, "seq_len: 32", "seq_len: 8192\n  attention: fused")).model.gpt.BlockAttention());
  CHECK(ErrorOf(Replace(kBase, "vocab: 256", "vocab: 256\n  attention: flash")) ==
        "job.yaml:9:14: model.attention: unknown value 'flash'; expected one of auto|fused|block");
}

}  // namespace
}  // namespace colossal::config

namespace colossal::config {
namespace {

using namespace colossal::config::testing;

TEST_CASE("parallel.sequence: ring (zigzag or not) and all_to_all, and the rules they must meet") {
  const std::string b = Replace(kBase, "n_head: 2", "n_head: 4");
  const std::string two = "resources: {ranks_per_node: 2}\n", four = "resources: {ranks_per_node: 4}\n";
  JobSpec ring = Parse(b + "parallel: {sequence: 2}\n" + two);
  CHECK(ring.parallel.sequence == 2);
  CHECK(ring.parallel.sequence_mode == SequenceMode::kRing);
  CHECK(ring.parallel.sequence_zigzag);
  CHECK(Parse(ToYaml(ring)) == ring);
  JobSpec plain = Parse(b + "parallel: {sequence: {size: 4, zigzag: false}}\n" + four);
  CHECK_FALSE(plain.parallel.sequence_zigzag);
  CHECK(Parse(ToYaml(plain)) == plain);
  JobSpec a2a = Parse(b + "parallel: {tensor: 2, sequence: {size: 2, mode: all_to_all}}\n" + four);
  CHECK(a2a.parallel.sequence_mode == SequenceMode::kAllToAll);
  CHECK(Parse(ToYaml(a2a)) == a2a);
  CHECK(Parse(ToYaml(Parse(b))) == Parse(b));  // size 1 writes no mode
  struct Case {
    std::string yaml;  // appended to b
    const char* message;
  };
  const Case cases[] = {
      {"parallel: {sequence: 32}\nresources: {ranks_per_node: 32}\n",
       "job.yaml:14:22: parallel.sequence: ring attention with zigzag chunks (two per rank) needs "
       "model.seq_len (32) divisible by 2 x size; got size 32 (2 x 32 = 64; or set "
       "parallel.sequence.zigzag: false)"},
      {"parallel: {sequence: {size: 3, zigzag: false}}\nresources: {ranks_per_node: 3}\n",
       "job.yaml:14:29: parallel.sequence.size: must divide model.seq_len (32), got 3"},
      {"parallel: {sequence: {size: 8, mode: all_to_all}}\nresources: {ranks_per_node: 8}\n",
       "job.yaml:14:29: parallel.sequence.size: all_to_all splits each rank's heads (model.n_head / "
       "parallel.tensor = 4 / 1 = 4) over the sequence ranks: size must divide 4, got 8"},
      {"parallel: {tensor: 2, sequence: {size: 4, mode: all_to_all}}\nresources: {ranks_per_node: 8}\n",
       "job.yaml:14:40: parallel.sequence.size: all_to_all splits each rank's heads (model.n_head / "
       "parallel.tensor = 4 / 2 = 2) over the sequence ranks: size must divide 2, got 4"},
      {"parallel: {sequence: {size: 2, mode: all_to_all, zigzag: true}}\n" + two,
       "job.yaml:14:58: parallel.sequence.zigzag: balances ring attention's causal work; mode "
       "all_to_all attends over whole sequences and has no chunks"},
      {"parallel: {sequence: {size: 1, mode: all_to_all}}\n",
       "job.yaml:14:38: parallel.sequence.mode: chooses how attention spans the ranks of a sequence "
       "group: it needs parallel.sequence.size > 1"},
      {"parallel: {tensor: {size: 2, sequence_parallel: true}, sequence: 2}\n" + four,
       "job.yaml:14:66: parallel.sequence: sequence parallelism composes with 1d tensor parallelism "
       "without its sequence_parallel; got parallel.tensor mode 1d with sequence_parallel"},
      {"parallel: {tensor: {size: 4, mode: 2d}, sequence: 2}\nresources: {ranks_per_node: 8}\n",
       "job.yaml:14:51: parallel.sequence: sequence parallelism composes with 1d tensor parallelism "
       "without its sequence_parallel; got parallel.tensor mode 2d"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    CHECK(ErrorOf(b + c.yaml) == c.message);
  }
}

}  // namespace
}  // namespace colossal::config
