// KV-cached GPT decoding (the model's decode graph) and sampling.
#include "runtime/worker/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/rng.h"
#include "runtime/base/status_macros.h"

namespace colossal::worker {

absl::StatusOr<std::unique_ptr<GptSampler>> GptSampler::Create(const graph::GptConfig& cfg,
                                                               const memory::ParamStore* params) {
  std::unique_ptr<GptSampler> s(new GptSampler());
  s->cfg_ = cfg;
  ASSIGN_OR_RETURN(s->graph_, graph::BuildGpt(cfg, 1, {}, graph::GptPass::kDecode));
  std::vector<memory::ParamStore::Spec> specs;
  for (int id : s->graph_.params()) specs.push_back({s->graph_.value(id).name, s->graph_.value(id).shape});
  s->layout_ = std::make_unique<memory::ParamStore>(specs, 0, /*allocate=*/false);
  ASSIGN_OR_RETURN(s->executor_, graph::Executor::Create(&s->graph_, s->layout_.get()));
  for (size_t i = 0; i < specs.size(); ++i) {
    const int j = params->Find(specs[i].name);
    if (j < 0 || params->info(j).shape != specs[i].shape) {
      return absl::InvalidArgumentError(absl::StrCat("parameter ", specs[i].name, " missing or misshapen"));
    }
    // The decode graph has no gradients and no node writes a parameter: the store is only read.
    s->executor_->RebindParam(static_cast<int>(i), const_cast<float*>(params->data(j)), nullptr);
  }
  s->ids_ = s->graph_.Find("ids");
  s->positions_ = s->graph_.Find("positions");
  s->logits_ = s->graph_.Find("logits");
  if (s->ids_ < 0 || s->positions_ < 0 || s->logits_ < 0) {
    return absl::InternalError("the decode graph lacks ids, positions or logits");
  }
  s->host_logits_.resize(static_cast<size_t>(s->graph_.value(s->logits_).numel()));
  return s;
}

const float* GptSampler::Step(int32_t token, int64_t pos) {
  // One id and one position in, the logits out, by copy: the executor's memory may be a
  // device's. Create checked the three values exist, so a failed copy is a bug.
  absl::Status s = executor_->WriteScalar<int32_t>(ids_, token);
  if (s.ok()) s = executor_->WriteScalar<int32_t>(positions_, static_cast<int32_t>(pos));
  COL_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
  executor_->Forward();
  s = executor_->ReadValue<float>(logits_, host_logits_);
  COL_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
  return host_logits_.data();
}

std::vector<int32_t> GptSampler::Generate(const std::vector<int32_t>& prompt,
                                          const SampleOptions& options) {
  const int64_t T = cfg_.seq_len;
  const int64_t limit =
      options.token_limit > 0 ? std::min(options.token_limit, cfg_.vocab) : cfg_.vocab;
  base::Xoshiro256StarStar rng(options.seed);
  std::vector<int32_t> context = prompt.empty() ? std::vector<int32_t>{0} : prompt;
  std::vector<int32_t> generated;
  // Feed the context; `pos` is the next position to fill.
  auto refill = [&](const std::vector<int32_t>& ctx) {
    const float* logits = nullptr;
    for (size_t i = 0; i < ctx.size(); ++i) logits = Step(ctx[i], static_cast<int64_t>(i));
    return logits;
  };
  if (static_cast<int64_t>(context.size()) > T) {
    context.erase(context.begin(), context.end() - T);
  }
  const float* logits = refill(context);
  int64_t pos = static_cast<int64_t>(context.size());
  std::vector<double> probs(limit);
  std::vector<int32_t> order(limit);
  for (int64_t t = 0; t < options.tokens; ++t) {
    // Temperature, top-k, softmax over the allowed ids.
    for (int64_t i = 0; i < limit; ++i) probs[i] = logits[i] / options.temperature;
    if (options.top_k > 0 && options.top_k < limit) {
      std::iota(order.begin(), order.end(), 0);
      std::nth_element(order.begin(), order.begin() + (options.top_k - 1), order.end(),
                       [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
      const double kth = probs[order[options.top_k - 1]];
      for (int64_t i = 0; i < limit; ++i) {
        if (probs[i] < kth) probs[i] = -INFINITY;
      }
    }
    const double max = *std::max_element(probs.begin(), probs.end());
    double sum = 0;
    for (double& p : probs) sum += (p = std::exp(p - max));
    double u = rng.Uniform() * sum;
    int32_t next = static_cast<int32_t>(limit - 1);
    for (int64_t i = 0; i < limit; ++i) {
      u -= probs[i];
      if (u < 0) {
        next = static_cast<int32_t>(i);
        break;
      }
    }
    generated.push_back(next);
    context.push_back(next);
    if (pos >= T) {
      // Slide: keep the last T/2 tokens and rebuild the cache.
      std::vector<int32_t> tail(context.end() - std::max<int64_t>(1, T / 2), context.end());
      context = tail;
      logits = refill(context);
      pos = static_cast<int64_t>(context.size());
    } else {
      logits = Step(next, pos);
      ++pos;
    }
  }
  return generated;
}

std::string SampleText(const config::SampleSpec& sample, uint64_t seed, const graph::GptConfig& gpt,
                       const memory::ParamStore& params, const data::Tokenizer& tokenizer) {
  auto sampler = GptSampler::Create(gpt, &params);
  if (!sampler.ok()) return "";
  SampleOptions o;
  o.tokens = sample.tokens;
  o.temperature = sample.temperature;
  o.top_k = sample.top_k;
  o.seed = seed;
  o.token_limit = tokenizer.vocab_size();
  std::vector<int32_t> out = (*sampler)->Generate(tokenizer.Encode(sample.prompt), o);
  return sample.prompt + tokenizer.Decode(out);
}

}  // namespace colossal::worker
