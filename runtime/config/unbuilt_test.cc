// Features a spec can describe that this build does not run are refused by default
// (Unbuilt::kRefuse), naming the key; the rules every model has to meet for the parallel
// layout it asks for (divisibility) are checked in either mode.
#include <catch2/catch.hpp>

#include <string>

#include "kernels/common/cuda_plugin.h"
#include "runtime/config/job_spec.h"
#include "runtime/config/job_spec_testing.h"

namespace colossal::config {
namespace {

using namespace colossal::config::testing;

TEST_CASE("features this build does not run are refused, naming the key") {
  const std::string b = kBase;
  const Unbuilt refuse = Unbuilt::kRefuse;
  if (kernels::CudaBackendBuilt()) {
    // One rank on one GPU runs (in any precision); more ranks are refused.
    for (const std::string& yaml : {b + "resources: {device: cuda}\n", b + "  precision: bf16\nresources: {device: cuda}\n"}) {
      absl::StatusOr<JobSpec> spec = ParseJobSpec(yaml, "job.yaml", {}, refuse);
      INFO(spec.status().message());
      CHECK(spec.ok());
    }
    CHECK(ErrorOf(b + "parallel: {data: 2}\nresources: {device: cuda, ranks_per_node: 2}\n", {}, refuse) ==
          "job.yaml:15:21: resources.device: cuda with 2 ranks is not available yet: GPU jobs train one rank on "
          "one GPU (data, tensor, pipeline and sequence parallelism over NCCL are not wired); use one rank or "
          "device: cpu");
  } else {
    CHECK(ErrorOf(b, {"train.precision=fp16", "resources.device=cuda"}, refuse) ==
          "--set 'resources.device=cuda': resources.device: cuda: this build has no CUDA backend (it was built "
          "where no nvcc was found); use device: cpu");
  }
  CHECK(ErrorOf(b + "parallel: {data: 2, zero: 3, reduce_dtype: bf16}\nresources: {ranks_per_node: 2}\n", {},
                refuse) ==
        "job.yaml:14:44: parallel.reduce_dtype: bf16 is not available with ZeRO 3 yet (its per-micro-step "
        "reduce-scatters sum in fp32); use parallel.zero 0, 1 or 2");
  CHECK(ErrorOf(b + "parallel: {reduce_dtype: bf16}\n") ==
        "job.yaml:14:26: parallel.reduce_dtype: bf16 sums the gradients of data-parallel replicas, and this job "
        "has one (parallel.data and parallel.sequence are 1); remove the key or add replicas");
  CHECK(Parse(b + "parallel: {data: 2, reduce_dtype: bf16}\nresources: {ranks_per_node: 2}\n").parallel.reduce_dtype ==
        ReduceDType::kBf16);
  CHECK(ErrorOf(b + "parallel: auto\n", {}, refuse) ==
        "job.yaml:14:11: parallel: auto is not available yet: the auto-parallel planner is not "
        "built; give the degrees as a map {data, zero, tensor, pipeline, sequence}");
  // Mode 3d: the micro-batch, d_model and the vocabulary split in q², the heads in q.
  CHECK(Parse(b + "parallel: {tensor: {size: 8, mode: 3d}}\nresources: {ranks_per_node: 8}\n")
            .parallel.tensor_mode == TensorMode::k3d);
  CHECK(ErrorOf(b + "  micro_batch: 2\nparallel: {tensor: {size: 8, mode: 3d}}\n"
                    "resources: {ranks_per_node: 8}\n", {}, refuse) ==
        "job.yaml:14:16: train.micro_batch: must be a multiple of 4 in mode 3d (the 2 x 2 x 2 "
        "cube splits the sequences of the micro-batch in 4); got 2");
  CHECK(ErrorOf(Replace(b, "d_model: 64", "d_model: 38") +
                "parallel: {tensor: {size: 8, mode: 3d}}\nresources: {ranks_per_node: 8}\n") ==
        "job.yaml:6:12: model.d_model: must be a multiple of 4 in mode 3d (the 2 x 2 x 2 "
        "cube splits the rows of every matrix in 4); got 38");
  // Mode 2.5d: the micro-batch splits in depth x q.
  CHECK(ErrorOf(b + "  micro_batch: 2\nparallel: {tensor: {size: 8, mode: 2.5d, depth: 2}}\n"
                    "resources: {ranks_per_node: 8}\n") ==
        "job.yaml:14:16: train.micro_batch: must be a multiple of 4 in mode 2.5d (the 2 x 2 x 2 "
        "grid splits the sequences of the micro-batch in 4); got 2");
  CHECK(Parse(b + "parallel: {tensor: {size: 8, mode: 2.5d, depth: 2}}\nresources: {ranks_per_node: 8}\n")
            .parallel.tensor_mode == TensorMode::k2p5d);
  // Gemini runs for one rank on the CPU backend; what it does not do yet is refused.
  CHECK(ParseJobSpec(b + "memory: {placement: auto, device_budget: 8GiB}\n", "job.yaml").ok());
  CHECK(ParseJobSpec(b + "memory: {nvme_dir: /scratch, offload_param_frac: 0.5, chunk_bytes: 1MiB}\n", "job.yaml")
            .ok());
  CHECK_THAT(ErrorOf(b + "memory: {placement: auto}\nparallel: {data: 2}\nresources: {ranks_per_node: 2}\n", {},
                     refuse),
             Catch::StartsWith("job.yaml:14:21: memory.placement: Gemini chunk paging with 2 ranks is not "
                               "available yet"));
  CHECK_THAT(ErrorOf(b + "memory: {device_budget: 8GiB}\nresources: {device: cuda}\n", {}, refuse),
             Catch::Contains("resources.device") || Catch::Contains("memory.device_budget: Gemini chunk paging on"));
  CHECK_THAT(ErrorOf(b + "memory: {host_budget: 8GiB}\n", {}, refuse),
             Catch::StartsWith("job.yaml:14:23: memory.host_budget: the host tier holds chunks for GPU jobs"));
  // Keys that cannot mean anything as given.
  CHECK(ErrorOf(b + "memory: {offload_param_frac: 0.5}\n") ==
        "job.yaml:14:30: memory.offload_param_frac: offloaded chunks live on NVMe on the CPU backend: set "
        "memory.nvme_dir");
  CHECK_THAT(ErrorOf(b + "memory: {nvme_dir: /x, offload_optim_frac: 1.5}\n"),
             Catch::EndsWith("memory.offload_optim_frac: must be in [0, 1], got 1.5"));
  CHECK_THAT(ErrorOf(b + "memory: {placement: auto, nvme_dir: /x, offload_param_frac: 0.5}\n"),
             Catch::EndsWith("memory.offload_param_frac: applies to placement static; placement auto places "
                             "chunks by memory.device_budget"));
  CHECK_THAT(ErrorOf(b + "memory: {chunk_bytes: 1000}\n"),
             Catch::EndsWith("memory.chunk_bytes: must be a positive multiple of 4 KiB (the NVMe alignment), got "
                             "1000 bytes"));
  CHECK_THAT(ErrorOf(b + "memory: {nvme_budget: 1GiB}\n"), Catch::EndsWith("memory.nvme_budget: needs memory.nvme_dir"));
  // Activation checkpointing runs.
  CHECK(ParseJobSpec(b + "memory: {activation_checkpointing: {every: 2}}\n", "job.yaml").ok());
  // What the defaults describe (and what ToYaml writes for them) is what this build runs.
  auto plain = ParseJobSpec(b + "memory: {placement: static, activation_checkpointing: false}\n"
                                "parallel: {tensor: {size: 1, mode: 2d}}\n",
                            "job.yaml");
  // Pipeline parallelism runs.
  CHECK(ParseJobSpec(b + "parallel: {pipeline: 2}\nresources: {ranks_per_node: 2}\n", "job.yaml").ok());
  // Tensor parallelism 1d runs.
  auto tp = ParseJobSpec(b + "parallel: {tensor: 2}\nresources: {ranks_per_node: 2}\n", "job.yaml");
  INFO(tp.status().message());
  CHECK(tp.ok());
  INFO(plain.status().message());
  REQUIRE(plain.ok());
  CHECK(ParseJobSpec(ToYaml(*plain), "again.yaml").ok());
  // A rule that any build enforces still comes first.
  CHECK_THAT(ErrorOf(b + "  precision: bf16\nparallel: {tensor: {size: 4, mode: 2d}}\nresources: {ranks_per_node: 4}\n",
                     {}, refuse),
             Catch::Contains("train.precision: bf16 is not available with parallel.tensor mode 2d"));
  // Mixed precision runs (on the CPU backend too).
  CHECK(ParseJobSpec(b + "  precision: bf16\n", "job.yaml").ok());
  CHECK(ParseJobSpec(b + "  precision: fp16\n  loss_scale: {initial: 256}\n", "job.yaml").ok());
}

TEST_CASE("tensor parallelism 1d needs heads, vocabulary (and with sequence_parallel, seq_len) that divide, and a GPT model") {
  const std::string b = kBase;  // n_head 2, vocab 256
  CHECK(ErrorOf(b + "parallel: {tensor: 4}\nresources: {ranks_per_node: 4}\n") ==
        "job.yaml:5:11: model.n_head: must be a multiple of parallel.tensor (4) in mode 1d, "
        "which gives every rank n_head / 4 whole heads; got 2");
  CHECK(ErrorOf(Replace(Replace(b, "vocab: 256", "vocab: 258"), "n_head: 2", "n_head: 4") +
                "parallel: {tensor: {size: 4}}\nresources: {ranks_per_node: 4}\n") ==
        "job.yaml:8:10: model.vocab: must be a multiple of parallel.tensor.size (4) in mode 1d, "
        "which splits wte by rows (pad it up to 260); got 258");
  CHECK(ErrorOf("name: g\nmodel: {graph: m.graph.yaml}\ndata: {train: t.txt}\n"
                "train: {steps: 1, global_batch: 2}\n"
                "parallel: {tensor: 2}\nresources: {ranks_per_node: 2}\n") ==
        "job.yaml:5:20: parallel.tensor: tensor parallelism needs a GPT model (model.type: gpt): "
        "a graph file says nothing of how its tensors split; got 2");
  CHECK(ErrorOf(b + "parallel: {tensor: {size: 1, sequence_parallel: true}}\n") ==
        "job.yaml:14:49: parallel.tensor.sequence_parallel: splits the layer-norm regions over "
        "the ranks of a 1d tensor group: it needs parallel.tensor.size > 1 and mode 1d, got "
        "size 1 mode 1d");
  CHECK(ErrorOf(Replace(b, "seq_len: 32", "seq_len: 31") +
                "parallel: {tensor: {size: 2, sequence_parallel: true}}\n"
                "resources: {ranks_per_node: 2}\n") ==
        "job.yaml:7:12: model.seq_len: must be a multiple of parallel.tensor.size (2) with "
        "parallel.tensor.sequence_parallel, which splits the tokens; got 31");
  CHECK(Parse(b + "parallel: {tensor: {size: 2, sequence_parallel: true}}\n"
                  "resources: {ranks_per_node: 2}\n")
            .parallel.tensor_sequence_parallel);
  // Mode 2d: heads, vocabulary and micro-batch split in q.
  CHECK(ErrorOf(Replace(b, "n_head: 2", "n_head: 1") +
                "parallel: {tensor: {size: 4, mode: 2d}}\nresources: {ranks_per_node: 4}\n") ==
        "job.yaml:5:11: model.n_head: must be a multiple of 2 in mode 2d (the 2 x 2 grid "
        "splits the heads in 2); got 1");
  CHECK(ErrorOf(Replace(b, "n_head: 2", "n_head: 4") + "  micro_batch: 1\n"
                "parallel: {tensor: {size: 4, mode: 2d}}\nresources: {ranks_per_node: 4}\n") ==
        "job.yaml:14:16: train.micro_batch: must be a multiple of 2 in mode 2d (the 2 x 2 "
        "grid splits the sequences of the micro-batch in 2); got 1");
  CHECK(Parse(Replace(b, "n_head: 2", "n_head: 4") +
              "parallel: {tensor: {size: 4, mode: 2d}}\nresources: {ranks_per_node: 4}\n")
            .parallel.tensor_mode == TensorMode::k2d);
  JobSpec ok = Parse(b + "parallel: {data: 2, tensor: {size: 2, mode: 1d}, zero: 1}\n"
                         "resources: {ranks_per_node: 4}\n");
  CHECK(ok.parallel.tensor == 2);
  CHECK_FALSE(ok.parallel.tensor_sequence_parallel);
  CHECK(Parse(ToYaml(ok)) == ok);
}

}  // namespace
}  // namespace colossal::config
