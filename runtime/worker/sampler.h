// Text generation from a GPT with a KV cache: one token at a time through the model's
// decode graph (graph::BuildGpt with GptPass::kDecode: the same builder, parameters and
// kernels as training, each layer's attention over the executor's cached keys and values),
// reading parameters by their Hugging Face names from a ParamStore without copying them.
// When the context reaches seq_len the cache is rebuilt from the last seq_len/2 tokens
// (a sliding window).
// Sampling: logits / temperature, optional top-k, softmax, a seeded draw; ids at or
// above `token_limit` (the tokenizer's vocabulary) are never drawn.
// Not thread-safe; the kernels use the caller's OpenMP team.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "graph/models/gpt.h"
#include "memory/param_store.h"
#include "runtime/config/job_spec.h"
#include "runtime/data/tokenizer.h"

namespace colossal::worker {

struct SampleOptions {
  int64_t tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: all
  uint64_t seed = 1;
  int64_t token_limit = 0;  // 0: the model's vocabulary
};

// The job's `sample`: its prompt and the continuation drawn (seeded by `seed`) from a
// GPT whose parameters are whole in host memory; empty when no sampler can be made.
std::string SampleText(const config::SampleSpec& sample, uint64_t seed, const graph::GptConfig& gpt,
                       const memory::ParamStore& params, const data::Tokenizer& tokenizer);

class GptSampler {
 public:
  // Fails when a parameter of the decode graph is missing from `params` or misshapen.
  // `params` must outlive the sampler; it is only read.
  static absl::StatusOr<std::unique_ptr<GptSampler>> Create(const graph::GptConfig& config,
                                                            const memory::ParamStore* params);

  // The `options.tokens` ids generated after `prompt` (an empty prompt starts from id 0).
  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, const SampleOptions& options);

  // Logits [vocab] after feeding `token` at position `pos` (exposed for tests): a copy
  // on the host, valid until the next Step.
  const float* Step(int32_t token, int64_t pos);

 private:
  GptSampler() = default;

  graph::GptConfig cfg_;
  graph::Graph graph_;
  std::unique_ptr<memory::ParamStore> layout_;  // the decode graph's parameters, unallocated
  std::unique_ptr<graph::Executor> executor_;
  int ids_ = -1, positions_ = -1, logits_ = -1;  // value ids in graph_
  std::vector<float> host_logits_;               // the last Step's logits, read back
};

}  // namespace colossal::worker
