// The GPT-2 graph builder.
#include "graph/models/gpt.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"
#include "runtime/base/status_macros.h"

namespace colossal::graph {
namespace {

class Builder {
 public:
  Builder(Graph& g) : g_(g) {}

  absl::StatusOr<int> One(const std::string& op, std::vector<int> in, Attrs attrs = {},
                          std::vector<std::string> names = {}) {
    ASSIGN_OR_RETURN(auto out, Apply(g_, op, in, attrs, names));
    return out[0];
  }
  absl::StatusOr<std::vector<int>> Many(const std::string& op, std::vector<int> in,
                                        Attrs attrs = {}, std::vector<std::string> names = {}) {
    return Apply(g_, op, in, attrs, names);
  }

 private:
  Graph& g_;
};

}  // namespace

absl::StatusOr<Graph> BuildGpt(const GptConfig& cfg, int64_t batch) {
  if (cfg.n_layer < 1 || cfg.n_head < 1 || cfg.d_model < 1 || cfg.seq_len < 1 || cfg.vocab < 1 ||
      batch < 1 || cfg.d_model % cfg.n_head != 0) {
    return absl::InvalidArgumentError("invalid GPT configuration");
  }
  Graph g;
  Builder b(g);
  const int64_t B = batch, T = cfg.seq_len, C = cfg.d_model, V = cfg.vocab, L = cfg.n_layer;
  g.dims()["batch"] = B;
  g.dims()["seq"] = T;
  const ParamInit normal{ParamInit::Kind::kNormal, 0.02};
  const ParamInit proj{ParamInit::Kind::kNormal, 0.02 / std::sqrt(2.0 * L)};
  const ParamInit zeros{ParamInit::Kind::kConstant, 0.0};
  const ParamInit ones{ParamInit::Kind::kConstant, 1.0};
  const Attrs ln = {{"eps", static_cast<double>(cfg.ln_eps)}};

  int ids = g.AddInput("ids", {B, T}, DType::kI32);
  int targets = g.AddInput("targets", {B, T}, DType::kI32);
  int positions = g.AddInput("positions", {B, T}, DType::kI32);
  int wte = g.AddParam("wte.weight", {V, C}, normal);
  int wpe = g.AddParam("wpe.weight", {T, C}, normal);

  ASSIGN_OR_RETURN(int tok, b.One("embedding", {ids, wte}, {}, {"tok_emb"}));
  ASSIGN_OR_RETURN(int pos, b.One("embedding", {positions, wpe}, {}, {"pos_emb"}));
  ASSIGN_OR_RETURN(int x, b.One("add", {tok, pos}, {}, {"h.in"}));

  for (int64_t l = 0; l < L; ++l) {
    const std::string p = absl::StrCat("h.", l, ".");
    int ln1_w = g.AddParam(p + "ln_1.weight", {C}, ones);
    int ln1_b = g.AddParam(p + "ln_1.bias", {C}, zeros);
    int attn_w = g.AddParam(p + "attn.c_attn.weight", {C, 3 * C}, normal);
    int attn_b = g.AddParam(p + "attn.c_attn.bias", {3 * C}, zeros);
    int aproj_w = g.AddParam(p + "attn.c_proj.weight", {C, C}, proj);
    int aproj_b = g.AddParam(p + "attn.c_proj.bias", {C}, zeros);
    int ln2_w = g.AddParam(p + "ln_2.weight", {C}, ones);
    int ln2_b = g.AddParam(p + "ln_2.bias", {C}, zeros);
    int fc_w = g.AddParam(p + "mlp.c_fc.weight", {C, 4 * C}, normal);
    int fc_b = g.AddParam(p + "mlp.c_fc.bias", {4 * C}, zeros);
    int mproj_w = g.AddParam(p + "mlp.c_proj.weight", {4 * C, C}, proj);
    int mproj_b = g.AddParam(p + "mlp.c_proj.bias", {C}, zeros);

    ASSIGN_OR_RETURN(auto ln1, b.Many("layer_norm", {x, ln1_w, ln1_b}, ln,
                                      {p + "ln_1.out", p + "ln_1.mean", p + "ln_1.rstd"}));
    ASSIGN_OR_RETURN(int qkv, b.One("matmul", {ln1[0], attn_w, attn_b}, {}, {p + "attn.qkv"}));
    ASSIGN_OR_RETURN(auto att, b.Many("attention", {qkv}, {{"n_head", cfg.n_head}},
                                      {p + "attn.out", p + "attn.probs"}));
    ASSIGN_OR_RETURN(int ao, b.One("matmul", {att[0], aproj_w, aproj_b}, {}, {p + "attn.proj"}));
    ASSIGN_OR_RETURN(x, b.One("add", {x, ao}, {}, {p + "res_1"}));
    ASSIGN_OR_RETURN(auto ln2, b.Many("layer_norm", {x, ln2_w, ln2_b}, ln,
                                      {p + "ln_2.out", p + "ln_2.mean", p + "ln_2.rstd"}));
    ASSIGN_OR_RETURN(int fc, b.One("matmul", {ln2[0], fc_w, fc_b}, {}, {p + "mlp.fc"}));
    ASSIGN_OR_RETURN(int act, b.One("gelu", {fc}, {}, {p + "mlp.act"}));
    ASSIGN_OR_RETURN(int mo, b.One("matmul", {act, mproj_w, mproj_b}, {}, {p + "mlp.proj"}));
    ASSIGN_OR_RETURN(x, b.One("add", {x, mo}, {}, {p + "res_2"}));
  }
  int lnf_w = g.AddParam("ln_f.weight", {C}, ones);
  int lnf_b = g.AddParam("ln_f.bias", {C}, zeros);
  ASSIGN_OR_RETURN(auto lnf, b.Many("layer_norm", {x, lnf_w, lnf_b}, ln,
                                    {"ln_f.out", "ln_f.mean", "ln_f.rstd"}));
  ASSIGN_OR_RETURN(int logits, b.One("matmul", {lnf[0], wte}, {{"transpose_w", int64_t{1}}},
                                     {"logits"}));
  ASSIGN_OR_RETURN(auto xent, b.Many("softmax_xent", {logits, targets}, {},
                                     {"token_loss", "token_lse"}));
  ASSIGN_OR_RETURN(int loss, b.One("mean", {xent[0]}, {}, {"loss"}));
  g.SetLoss(loss);
  g.MarkOutput(xent[0]);
  return g;
}

GptParamCounts CountGptParams(const GptConfig& c) {
  const int64_t C = c.d_model;
  const int64_t per_layer = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C +
                            (C * 4 * C + 4 * C) + (4 * C * C + C);
  GptParamCounts counts;
  counts.total = c.vocab * C + c.seq_len * C + c.n_layer * per_layer + 2 * C;
  counts.non_embedding_pos = counts.total - c.seq_len * C;
  return counts;
}

double GptTrainingFlops(const GptConfig& c, int64_t tokens) {
  const double n = static_cast<double>(CountGptParams(c).non_embedding_pos);
  return static_cast<double>(tokens) *
         (6.0 * n + 12.0 * c.n_layer * c.seq_len * c.d_model);
}

void FillPositions(int32_t* positions, int64_t batch, int64_t seq) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t) positions[b * seq + t] = static_cast<int32_t>(t);
}

}  // namespace colossal::graph
