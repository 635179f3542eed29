// KV-cached GPT decoding and sampling.
#include "runtime/worker/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gelu/gelu.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/matmul/matmul.h"
#include "runtime/base/rng.h"

namespace colossal::worker {
namespace {

// y[n] = x[k] · W[k, n] + b (W row-major [k, n]).
void Linear(const float* x, const float* w, const float* b, float* y, int64_t k, int64_t n) {
  kernels::MatmulArgs a;
  a.m = 1, a.n = n, a.k = k;
  a.a = x, a.lda = k;
  a.b = w, a.ldb = n;
  a.c = y, a.ldc = n;
  a.bias = b;
  kernels::Matmul(a);
}

}  // namespace

absl::StatusOr<GptSampler> GptSampler::Create(const graph::GptConfig& cfg,
                                              const memory::ParamStore* params) {
  GptSampler s;
  s.cfg_ = cfg;
  const int64_t C = cfg.d_model, V = cfg.vocab, T = cfg.seq_len;
  absl::Status error;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) -> const float* {
    int i = params->Find(name);
    if (i < 0 || params->info(i).shape != shape) {
      if (error.ok()) error = absl::InvalidArgumentError(absl::StrCat("parameter ", name, " missing or misshapen"));
      return nullptr;
    }
    return params->data(i);
  };
  s.wte_ = get("wte.weight", {V, C});
  s.wpe_ = get("wpe.weight", {T, C});
  s.lnf_w_ = get("ln_f.weight", {C});
  s.lnf_b_ = get("ln_f.bias", {C});
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string p = absl::StrCat("h.", l, ".");
    s.layers_.push_back({get(p + "ln_1.weight", {C}), get(p + "ln_1.bias", {C}),
                         get(p + "attn.c_attn.weight", {C, 3 * C}),
                         get(p + "attn.c_attn.bias", {3 * C}),
                         get(p + "attn.c_proj.weight", {C, C}), get(p + "attn.c_proj.bias", {C}),
                         get(p + "ln_2.weight", {C}), get(p + "ln_2.bias", {C}),
                         get(p + "mlp.c_fc.weight", {C, 4 * C}), get(p + "mlp.c_fc.bias", {4 * C}),
                         get(p + "mlp.c_proj.weight", {4 * C, C}),
                         get(p + "mlp.c_proj.bias", {C})});
  }
  if (!error.ok()) return error;
  s.k_cache_.assign(cfg.n_layer * T * C, 0.0f);
  s.v_cache_.assign(cfg.n_layer * T * C, 0.0f);
  s.x_.resize(C), s.h_.resize(C), s.qkv_.resize(3 * C), s.att_.resize(C);
  s.fc_.resize(4 * C), s.logits_.resize(V), s.mean_.resize(1), s.rstd_.resize(1);
  return s;
}

const std::vector<float>& GptSampler::Step(int32_t token, int64_t pos) {
  const int64_t C = cfg_.d_model, T = cfg_.seq_len, H = cfg_.n_head;
  for (int64_t c = 0; c < C; ++c) x_[c] = wte_[token * C + c] + wpe_[pos * C + c];
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const Layer& L = layers_[l];
    kernels::LayerNormForward(x_.data(), L.ln1_w, L.ln1_b, h_.data(), mean_.data(), rstd_.data(),
                              1, C, cfg_.ln_eps);
    Linear(h_.data(), L.attn_w, L.attn_b, qkv_.data(), C, 3 * C);
    float* kc = k_cache_.data() + l * T * C;
    float* vc = v_cache_.data() + l * T * C;
    std::copy(qkv_.begin() + C, qkv_.begin() + 2 * C, kc + pos * C);
    std::copy(qkv_.begin() + 2 * C, qkv_.end(), vc + pos * C);
    kernels::AttentionDecode(qkv_.data(), kc, vc, att_.data(), 1, pos + 1, T, H, C / H);
    Linear(att_.data(), L.aproj_w, L.aproj_b, h_.data(), C, C);
    kernels::Add(x_.data(), h_.data(), x_.data(), C);
    kernels::LayerNormForward(x_.data(), L.ln2_w, L.ln2_b, h_.data(), mean_.data(), rstd_.data(),
                              1, C, cfg_.ln_eps);
    Linear(h_.data(), L.fc_w, L.fc_b, fc_.data(), C, 4 * C);
    kernels::GeluForward(fc_.data(), fc_.data(), 4 * C);
    Linear(fc_.data(), L.mproj_w, L.mproj_b, h_.data(), 4 * C, C);
    kernels::Add(x_.data(), h_.data(), x_.data(), C);
  }
  kernels::LayerNormForward(x_.data(), lnf_w_, lnf_b_, h_.data(), mean_.data(), rstd_.data(), 1,
                            C, cfg_.ln_eps);
  kernels::MatmulArgs a;
  a.trans_b = kernels::Trans::kYes;
  a.m = 1, a.n = cfg_.vocab, a.k = C;
  a.a = h_.data(), a.lda = C;
  a.b = wte_, a.ldb = C;
  a.c = logits_.data(), a.ldc = cfg_.vocab;
  kernels::Matmul(a);
  return logits_;
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
    const std::vector<float>* logits = nullptr;
    for (size_t i = 0; i < ctx.size(); ++i) logits = &Step(ctx[i], static_cast<int64_t>(i));
    return logits;
  };
  if (static_cast<int64_t>(context.size()) > T) {
    context.erase(context.begin(), context.end() - T);
  }
  const std::vector<float>* logits = refill(context);
  int64_t pos = static_cast<int64_t>(context.size());
  std::vector<double> probs(limit);
  std::vector<int32_t> order(limit);
  for (int64_t t = 0; t < options.tokens; ++t) {
    // Temperature, top-k, softmax over the allowed ids.
    for (int64_t i = 0; i < limit; ++i) probs[i] = (*logits)[i] / options.temperature;
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
      logits = &Step(next, pos);
      ++pos;
    }
  }
  return generated;
}

}  // namespace colossal::worker
