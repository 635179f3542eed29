// Text generation from a GPT with a KV cache: one token at a time through the same
// kernels as training (LayerNorm, Matmul, AttentionDecode, GELU), reading parameters
// by their Hugging Face names from a ParamStore. When the context reaches seq_len the
// cache is rebuilt from the last seq_len/2 tokens (a sliding window).
// Sampling: logits / temperature, optional top-k, softmax, a seeded draw; ids at or
// above `token_limit` (the tokenizer's vocabulary) are never drawn.
// Not thread-safe; the kernels use the caller's OpenMP team.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/models/gpt.h"
#include "memory/param_store.h"

namespace colossal::worker {

struct SampleOptions {
  int64_t tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: all
  uint64_t seed = 1;
  int64_t token_limit = 0;  // 0: the model's vocabulary
};

class GptSampler {
 public:
  // Fails when a parameter is missing or misshapen.
  static absl::StatusOr<GptSampler> Create(const graph::GptConfig& config,
                                           const memory::ParamStore* params);

  // The `options.tokens` ids generated after `prompt` (an empty prompt starts from id 0).
  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, const SampleOptions& options);

  // Logits [vocab] after feeding `token` at position `pos` (exposed for tests).
  const std::vector<float>& Step(int32_t token, int64_t pos);

 private:
  GptSampler() = default;

  struct Layer {
    const float *ln1_w, *ln1_b, *attn_w, *attn_b, *aproj_w, *aproj_b;
    const float *ln2_w, *ln2_b, *fc_w, *fc_b, *mproj_w, *mproj_b;
  };
  graph::GptConfig cfg_;
  const float* wte_ = nullptr;
  const float* wpe_ = nullptr;
  const float* lnf_w_ = nullptr;
  const float* lnf_b_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<float> k_cache_, v_cache_;  // [L, T, C]
  std::vector<float> x_, h_, qkv_, att_, fc_, logits_, mean_, rstd_;
};

}  // namespace colossal::worker
