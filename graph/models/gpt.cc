// The GPT-2 graph builder.
#include "graph/models/gpt.h"

#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "graph/models/gpt_split.h"
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

// What a parameter of a transformer layer is to a tensor-parallel mode: a layer norm's
// weight or bias, the weight or bias of a linear whose output columns split (c_attn,
// c_fc), or of one whose input rows split (the projections).
enum class Role { kNorm, kColumnWeight, kColumnBias, kRowWeight, kRowBias };
using Declare = std::function<absl::StatusOr<int>(const std::string& name, Shape global,
                                                  ParamInit init, Role role, int64_t interleave)>;

struct LayerParams {
  int ln1_w, ln1_b, attn_w, attn_b, aproj_w, aproj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w, mproj_b;
};

// Layer `prefix`'s parameters with GPT-2's names, global shapes and initialisation; the
// mode's `declare` places each by its role.
absl::StatusOr<LayerParams> DeclareLayer(const std::string& p, int64_t C, int64_t L,
                                         const Declare& declare) {
  const ParamInit normal{ParamInit::Kind::kNormal, 0.02};
  const ParamInit proj{ParamInit::Kind::kNormal, 0.02 / std::sqrt(2.0 * L)};
  const ParamInit zeros{ParamInit::Kind::kConstant, 0.0};
  const ParamInit ones{ParamInit::Kind::kConstant, 1.0};
  LayerParams l;
  ASSIGN_OR_RETURN(l.ln1_w, declare(p + "ln_1.weight", {C}, ones, Role::kNorm, 1));
  ASSIGN_OR_RETURN(l.ln1_b, declare(p + "ln_1.bias", {C}, zeros, Role::kNorm, 1));
  ASSIGN_OR_RETURN(l.attn_w, declare(p + "attn.c_attn.weight", {C, 3 * C}, normal, Role::kColumnWeight, 3));
  ASSIGN_OR_RETURN(l.attn_b, declare(p + "attn.c_attn.bias", {3 * C}, zeros, Role::kColumnBias, 3));
  ASSIGN_OR_RETURN(l.aproj_w, declare(p + "attn.c_proj.weight", {C, C}, proj, Role::kRowWeight, 1));
  ASSIGN_OR_RETURN(l.aproj_b, declare(p + "attn.c_proj.bias", {C}, zeros, Role::kRowBias, 1));
  ASSIGN_OR_RETURN(l.ln2_w, declare(p + "ln_2.weight", {C}, ones, Role::kNorm, 1));
  ASSIGN_OR_RETURN(l.ln2_b, declare(p + "ln_2.bias", {C}, zeros, Role::kNorm, 1));
  ASSIGN_OR_RETURN(l.fc_w, declare(p + "mlp.c_fc.weight", {C, 4 * C}, normal, Role::kColumnWeight, 1));
  ASSIGN_OR_RETURN(l.fc_b, declare(p + "mlp.c_fc.bias", {4 * C}, zeros, Role::kColumnBias, 1));
  ASSIGN_OR_RETURN(l.mproj_w, declare(p + "mlp.c_proj.weight", {4 * C, C}, proj, Role::kRowWeight, 1));
  ASSIGN_OR_RETURN(l.mproj_b, declare(p + "mlp.c_proj.bias", {C}, zeros, Role::kRowBias, 1));
  return l;
}

// Causal self-attention of layer `p` over this rank's `heads` of qkv: the fused op (out
// and the T×T probabilities) or, with cfg.block_attention, the blockwise one (out and
// the log-sum-exp per row). Output 0 is the attention output either way.
absl::StatusOr<std::vector<int>> Attention(Builder& b, const GptConfig& cfg, int qkv, int64_t heads,
                                           const std::string& p) {
  if (cfg.block_attention) {
    return b.Many("block_attention", {qkv}, {{"n_head", heads}}, {p + "attn.out", p + "attn.lse"});
  }
  return b.Many("attention", {qkv}, {{"n_head", heads}}, {p + "attn.out", p + "attn.probs"});
}

}  // namespace

absl::Status CheckGptTensorParallel(const GptConfig& cfg, const GptTensorParallel& tp, int64_t batch) {
  using parallel::TensorMode;
  const TensorMode mode = tp.three_d ? TensorMode::k3d
                          : tp.two_d ? (tp.depth > 1 ? TensorMode::k2p5d : TensorMode::k2d)
                                     : TensorMode::k1d;
  return CheckGptSplit(mode, tp.size, tp.depth, tp.sequence_parallel,
                       {cfg.n_head, cfg.d_model, cfg.vocab, cfg.seq_len, batch});
}

namespace {

absl::StatusOr<Graph> BuildGpt2d(const GptConfig& cfg, int64_t batch, const GptTensorParallel& tp) {
  RETURN_IF_ERROR(CheckGptTensorParallel(cfg, tp, batch));
  const int64_t D = tp.depth;
  const int64_t q = tp.grid_q();
  // 2.5d: depth slice k runs 2d on its 1/D of the micro-batch (token blocks k·q + i).
  const int64_t k = tp.rank / (q * q), i = (tp.rank / q) % q, j = tp.rank % q;
  const int64_t block = k * q + i, blocks = D * q;
  Graph g;
  Builder b(g);
  const int64_t B = batch, T = cfg.seq_len, C = cfg.d_model, V = cfg.vocab, L = cfg.n_layer;
  const int64_t Bq = B / blocks, Cq = C / q;
  // Whole across the depth: every parameter's gradient is partial there.
  const std::vector<std::string> depth_partial =
      D > 1 ? std::vector<std::string>{"depth"} : std::vector<std::string>{};
  g.dims()["batch"] = B;
  g.dims()["seq"] = T;
  const ParamInit normal{ParamInit::Kind::kNormal, 0.02};
  const ParamInit zeros{ParamInit::Kind::kConstant, 0.0};
  const ParamInit ones{ParamInit::Kind::kConstant, 1.0};
  const Attrs summa = {{"group", std::string("col")}, {"group_b", std::string("row")}, {"q", q}};
  const Attrs ln = {{"group", std::string("col")}, {"eps", static_cast<double>(cfg.ln_eps)}, {"c", C}};

  // A matrix in q×q blocks (rows over the grid rows i, columns over the grid columns j).
  auto matrix = [&](const std::string& name, Shape global, ParamInit init,
                    int64_t interleave = 1) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(Layout layout, MakeLayout(global, {{0, q, i, 1, "row"}, {1, q, j, interleave, "col"}}));
    layout.partial_grad_axes = depth_partial;
    const int id = g.AddParam(name, LocalShape(layout), init);
    g.mutable_value(id).layout = std::move(layout);
    return id;
  };
  // A vector (or wpe's [T, C]) split by hidden block j, whole down the grid column.
  auto vector = [&](const std::string& name, Shape global, ParamInit init,
                    int64_t interleave = 1) -> absl::StatusOr<int> {
    const int dim = static_cast<int>(global.size()) - 1;
    ASSIGN_OR_RETURN(Layout layout, MakeLayout(global, {{dim, q, j, interleave, "col"}}));
    layout.partial_grad_axes = depth_partial;
    layout.partial_grad_axes.push_back("row");
    const int id = g.AddParam(name, LocalShape(layout), init);
    g.mutable_value(id).layout = std::move(layout);
    return id;
  };
  auto linear = [&](int x, int w, int bias, const std::string& name) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(int y, b.One("summa_matmul", {x, w}, summa, {name + ".product"}));
    return b.One("bias_add", {y, bias}, {}, {name});
  };
  auto layer_norm = [&](int x, int w, int bias, const std::string& p) {
    return b.Many("layer_norm_2d", {x, w, bias}, ln, {p + ".out", p + ".mean", p + ".rstd"});
  };

  g.SetLayer(0);  // the embeddings
  int ids = g.AddInput("ids", {B, T}, DType::kI32);
  int targets = g.AddInput("targets", {B, T}, DType::kI32);
  int positions = g.AddInput("positions", {B, T}, DType::kI32);
  ASSIGN_OR_RETURN(int wte, matrix("wte.weight", {V, C}, normal));
  ASSIGN_OR_RETURN(int wpe, vector("wpe.weight", {T, C}, normal));
  const Attrs block_rows = {{"parts", blocks}, {"part", block}, {"shape", std::vector<int64_t>{Bq, T}}};
  int slice_ids = ids;  // this depth slice's sequences
  if (D > 1) {
    ASSIGN_OR_RETURN(slice_ids, b.One("shard_rows", {ids},
                                      {{"parts", D}, {"part", k}, {"shape", std::vector<int64_t>{B / D, T}}},
                                      {"ids.slice"}));
  }
  ASSIGN_OR_RETURN(int tok, b.One("embedding_2d", {slice_ids, wte},
                                  {{"group", std::string("row")}, {"q", q}, {"vocab_start", i * (V / q)},
                                   {"shape", std::vector<int64_t>{Bq, T, Cq}}},
                                  {"tok_emb"}));
  ASSIGN_OR_RETURN(int local_positions, b.One("shard_rows", {positions}, block_rows, {"positions.local"}));
  ASSIGN_OR_RETURN(int pos, b.One("embedding", {local_positions, wpe}, {}, {"pos_emb"}));
  ASSIGN_OR_RETURN(int x, b.One("add", {tok, pos}, {}, {"h.in"}));

  for (int64_t l = 0; l < L; ++l) {
    g.SetLayer(static_cast<int>(l) + 1);
    const std::string p = absl::StrCat("h.", l, ".");
    // Every matrix in q×q blocks, every vector by hidden block.
    ASSIGN_OR_RETURN(const LayerParams w,
                     DeclareLayer(p, C, L, [&](const std::string& name, Shape global, ParamInit init,
                                               Role role, int64_t interleave) {
                       const bool is_matrix = role == Role::kColumnWeight || role == Role::kRowWeight;
                       return is_matrix ? matrix(name, std::move(global), init, interleave)
                                        : vector(name, std::move(global), init, interleave);
                     }));
    const auto [ln1_w, ln1_b, attn_w, attn_b, aproj_w, aproj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w,
                mproj_b] = w;

    ASSIGN_OR_RETURN(auto ln1, layer_norm(x, ln1_w, ln1_b, p + "ln_1"));
    ASSIGN_OR_RETURN(int qkv, linear(ln1[0], attn_w, attn_b, p + "attn.qkv"));
    ASSIGN_OR_RETURN(auto att, Attention(b, cfg, qkv, cfg.n_head / q, p));
    ASSIGN_OR_RETURN(int ao, linear(att[0], aproj_w, aproj_b, p + "attn.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, ao}, {}, {p + "res_1"}));
    ASSIGN_OR_RETURN(auto ln2, layer_norm(x, ln2_w, ln2_b, p + "ln_2"));
    ASSIGN_OR_RETURN(int fc, linear(ln2[0], fc_w, fc_b, p + "mlp.fc"));
    ASSIGN_OR_RETURN(int act, b.One("gelu", {fc}, {}, {p + "mlp.act"}));
    ASSIGN_OR_RETURN(int mo, linear(act, mproj_w, mproj_b, p + "mlp.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, mo}, {}, {p + "res_2"}));
  }
  g.SetLayer(static_cast<int>(L) + 1);  // final norm, head, loss
  ASSIGN_OR_RETURN(int lnf_w, vector("ln_f.weight", {C}, ones));
  ASSIGN_OR_RETURN(int lnf_b, vector("ln_f.bias", {C}, zeros));
  ASSIGN_OR_RETURN(auto lnf, layer_norm(x, lnf_w, lnf_b, "ln_f"));
  // The tied head with wte in place (linear_3d without a weight group): the grid column's
  // token blocks gathered, each multiplied by this rank's wte block (vocabulary block i,
  // hidden block j), the partial sums over the hidden blocks reduce-scattered along the
  // grid row — rank (i, j) gets token block j's logits in vocabulary block i. Only
  // activations and logits move; SUMMA ABᵀ would gather the column's wte blocks.
  ASSIGN_OR_RETURN(int logits, b.One("linear_3d", {lnf[0], wte},
                                     {{"group", std::string("row")}, {"group_c", std::string("col")},
                                      {"q", q}, {"transpose_w", int64_t{1}}},
                                     {"logits"}));
  const Attrs logit_rows = {{"parts", blocks}, {"part", k * q + j}, {"shape", std::vector<int64_t>{Bq, T}}};
  ASSIGN_OR_RETURN(int block_targets, b.One("shard_rows", {targets}, logit_rows, {"targets.block"}));
  ASSIGN_OR_RETURN(int local_targets,
                   b.One("vocab_shard_ids", {block_targets}, {{"start", i * (V / q)}, {"size", V / q}},
                         {"targets.local"}));
  ASSIGN_OR_RETURN(auto xent, b.Many("vocab_parallel_xent", {logits, local_targets},
                                     {{"group", std::string("row")}}, {"token_loss", "token_lse"}));
  ASSIGN_OR_RETURN(int loss, b.One("mean", {xent[0]}, {}, {"loss"}));
  g.SetLoss(loss);
  g.MarkOutput(xent[0]);
  return g;
}


// 3D (gpt.h): rank (a, b, c) of a q×q×q cube; even and odd activation forms alternate.
absl::StatusOr<Graph> BuildGpt3d(const GptConfig& cfg, int64_t batch, const GptTensorParallel& tp) {
  RETURN_IF_ERROR(CheckGptTensorParallel(cfg, tp, batch));
  const int64_t q = tp.grid_q();
  const int64_t a = tp.IndexOf("depth", tp.rank), bi = tp.IndexOf("row", tp.rank),
                c = tp.IndexOf("col", tp.rank);
  Graph g;
  Builder b(g);
  const int64_t B = batch, T = cfg.seq_len, C = cfg.d_model, V = cfg.vocab, L = cfg.n_layer;
  const int64_t Bq = B / (q * q);  // sequences per token block
  g.dims()["batch"] = B;
  g.dims()["seq"] = T;
  const ParamInit normal{ParamInit::Kind::kNormal, 0.02};
  const ParamInit zeros{ParamInit::Kind::kConstant, 0.0};
  const ParamInit ones{ParamInit::Kind::kConstant, 1.0};
  // A form's two cube axes: the token sub-block's and the hidden block's.
  struct Form {
    std::string sub, hidden;
    int64_t sub_index, hidden_index;
  };
  const Form even{"row", "col", bi, c}, odd{"col", "row", c, bi};
  auto add = [&](const std::string& name, Shape global, ParamInit init, std::vector<DimSplit> splits,
                 std::vector<std::string> partial) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(Layout layout, MakeLayout(global, std::move(splits)));
    layout.partial_grad_axes = std::move(partial);
    const int id = g.AddParam(name, LocalShape(layout), init);
    g.mutable_value(id).layout = std::move(layout);
    return id;
  };
  // The weight of a linear from form `in`: input block in.hidden (rows, each block split
  // over "depth"), output block in.sub (columns).
  auto matrix = [&](const std::string& name, Shape global, ParamInit init, const Form& in,
                    int64_t interleave = 1) {
    return add(name, std::move(global), init,
               {{0, q * q, in.hidden_index * q + a, 1, in.hidden, "depth", q},
                {1, q, in.sub_index, interleave, in.sub}},
               {});
  };
  // A vector added in form `f` (its last dimension split by f's hidden block), whole over
  // "depth" and f.sub, where its gradient is partial.
  auto vector = [&](const std::string& name, Shape global, ParamInit init, const Form& f,
                    int64_t interleave = 1) {
    const int dim = static_cast<int>(global.size()) - 1;
    return add(name, std::move(global), init, {{dim, q, f.hidden_index, interleave, f.hidden}},
               {"depth", f.sub});
  };
  // The all-gather of x over a group of q, shaped `whole`.
  auto gather = [&](int x, const std::string& group, Shape whole, const std::string& name) {
    return b.One("all_gather", {x}, {{"group", group}, {"parts", q}, {"shape", std::vector<int64_t>(whole)}},
                 {name});
  };
  // x·W (x·Wᵀ) from form `in` (x [Bq, T, K/q]) to the other form ([Bq, T, M/q]): x
  // gathered over in.sub, W over "depth", the product reduce-scattered over in.hidden
  // (linear_3d_ops.cc; the gathered blocks are the op's scratch, not kept).
  auto product = [&](int x, int w, const Form& in, bool transposed, const std::string& name) {
    Attrs attrs = {{"group", in.sub}, {"group_b", std::string("depth")}, {"group_c", in.hidden}, {"q", q}};
    if (transposed) attrs["transpose_w"] = int64_t{1};
    return b.One("linear_3d", {x, w}, attrs, {name});
  };
  auto linear = [&](int x, int w, int bias, const Form& in,
                    const std::string& name) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(int y, product(x, w, in, /*transposed=*/false, name + ".sum"));
    return b.One("bias_add", {y, bias}, {}, {name});
  };
  const Attrs ln = {{"group", even.hidden}, {"eps", static_cast<double>(cfg.ln_eps)}, {"c", C}};
  auto layer_norm = [&](int x, int w, int bias, const std::string& p) {
    return b.Many("layer_norm_2d", {x, w, bias}, ln, {p + ".out", p + ".mean", p + ".rstd"});
  };
  // Rows of the micro-batch [B, T] in token block a·q + s.
  auto block_rows = [&](int x, int64_t s, const std::string& name) {
    return b.One("shard_rows", {x},
                 {{"parts", q * q}, {"part", a * q + s}, {"shape", std::vector<int64_t>{Bq, T}}},
                 {name});
  };

  g.SetLayer(0);  // the embeddings
  int ids = g.AddInput("ids", {B, T}, DType::kI32);
  int targets = g.AddInput("targets", {B, T}, DType::kI32);
  int positions = g.AddInput("positions", {B, T}, DType::kI32);
  // wte [V, C] as the even form's weight transposed: vocabulary block b, hidden block c.
  ASSIGN_OR_RETURN(int wte, add("wte.weight", {V, C}, normal,
                                {{0, q * q, bi * q + a, 1, "row", "depth", q}, {1, q, c, 1, "col"}}, {}));
  ASSIGN_OR_RETURN(int wpe, vector("wpe.weight", {T, C}, normal, even));
  ASSIGN_OR_RETURN(int wte_block, gather(wte, "depth", {V / q, C / q}, "wte.block"));
  ASSIGN_OR_RETURN(int block_ids,
                   b.One("shard_rows", {ids},
                         {{"parts", q}, {"part", a}, {"shape", std::vector<int64_t>{Bq * q, T}}},
                         {"ids.block"}));
  ASSIGN_OR_RETURN(int tok, b.One("embedding_2d", {block_ids, wte_block},
                                  {{"group", even.sub}, {"q", q}, {"vocab_start", bi * (V / q)},
                                   {"shape", std::vector<int64_t>{Bq, T, C / q}}},
                                  {"tok_emb"}));
  ASSIGN_OR_RETURN(int local_positions, block_rows(positions, bi, "positions.local"));
  ASSIGN_OR_RETURN(int pos, b.One("embedding", {local_positions, wpe}, {}, {"pos_emb"}));
  ASSIGN_OR_RETURN(int x, b.One("add", {tok, pos}, {}, {"h.in"}));

  for (int64_t l = 0; l < L; ++l) {
    g.SetLayer(static_cast<int>(l) + 1);
    const std::string p = absl::StrCat("h.", l, ".");
    // c_attn and c_fc from the even form, the projections from the odd; the norms and the
    // projections' biases are added in the even form, c_attn's and c_fc's in the odd.
    ASSIGN_OR_RETURN(const LayerParams w,
                     DeclareLayer(p, C, L, [&](const std::string& name, Shape global, ParamInit init,
                                               Role role, int64_t interleave) {
                       switch (role) {
                         case Role::kColumnWeight: return matrix(name, std::move(global), init, even, interleave);
                         case Role::kRowWeight: return matrix(name, std::move(global), init, odd, interleave);
                         case Role::kColumnBias: return vector(name, std::move(global), init, odd, interleave);
                         default: return vector(name, std::move(global), init, even, interleave);
                       }
                     }));
    const auto [ln1_w, ln1_b, attn_w, attn_b, aproj_w, aproj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w,
                mproj_b] = w;

    ASSIGN_OR_RETURN(auto ln1, layer_norm(x, ln1_w, ln1_b, p + "ln_1"));
    ASSIGN_OR_RETURN(int qkv, linear(ln1[0], attn_w, attn_b, even, p + "attn.qkv"));
    ASSIGN_OR_RETURN(auto att, Attention(b, cfg, qkv, cfg.n_head / q, p));
    ASSIGN_OR_RETURN(int ao, linear(att[0], aproj_w, aproj_b, odd, p + "attn.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, ao}, {}, {p + "res_1"}));
    ASSIGN_OR_RETURN(auto ln2, layer_norm(x, ln2_w, ln2_b, p + "ln_2"));
    ASSIGN_OR_RETURN(int fc, linear(ln2[0], fc_w, fc_b, even, p + "mlp.fc"));
    ASSIGN_OR_RETURN(int act, b.One("gelu", {fc}, {}, {p + "mlp.act"}));
    ASSIGN_OR_RETURN(int mo, linear(act, mproj_w, mproj_b, odd, p + "mlp.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, mo}, {}, {p + "res_2"}));
  }
  g.SetLayer(static_cast<int>(L) + 1);  // final norm, head, loss
  ASSIGN_OR_RETURN(int lnf_w, vector("ln_f.weight", {C}, ones, even));
  ASSIGN_OR_RETURN(int lnf_b, vector("ln_f.bias", {C}, zeros, even));
  ASSIGN_OR_RETURN(auto lnf, layer_norm(x, lnf_w, lnf_b, "ln_f"));
  // The tied head as an even linear over wteᵀ: token block a's logits in vocabulary block
  // b, their partial sums over the hidden blocks reduce-scattered to the odd form's rows.
  ASSIGN_OR_RETURN(int logits, product(lnf[0], wte, even, /*transposed=*/true, "logits"));
  ASSIGN_OR_RETURN(int block_targets, block_rows(targets, c, "targets.block"));
  ASSIGN_OR_RETURN(int local_targets,
                   b.One("vocab_shard_ids", {block_targets}, {{"start", bi * (V / q)}, {"size", V / q}},
                         {"targets.local"}));
  ASSIGN_OR_RETURN(auto xent, b.Many("vocab_parallel_xent", {logits, local_targets},
                                     {{"group", odd.hidden}}, {"token_loss", "token_lse"}));
  ASSIGN_OR_RETURN(int loss, b.One("mean", {xent[0]}, {}, {"loss"}));
  g.SetLoss(loss);
  g.MarkOutput(xent[0]);
  return g;
}

}  // namespace

namespace {

// Attention over a sequence-parallel group (GptSequenceParallel) of `heads` local heads.
absl::StatusOr<std::vector<int>> SequenceAttention(Builder& b, const GptConfig& cfg, int qkv, int64_t heads,
                                                   const GptSequenceParallel& sp, const std::string& p) {
  const parallel::SequenceLayout l = sp.Layout(cfg.seq_len);
  Attrs a = {{"group", std::string("sequence")}, {"parts", sp.size}, {"seq", cfg.seq_len},
             {"zigzag", int64_t{l.zigzag ? 1 : 0}}};
  if (!sp.all_to_all) {
    a["n_head"] = heads;
    return b.Many("ring_attention", {qkv}, a, {p + "attn.out", p + "attn.lse"});
  }
  a["groups"] = int64_t{3};
  ASSIGN_OR_RETURN(int long_qkv, b.One("seq_to_heads", {qkv}, a, {p + "attn.qkv_heads"}));
  ASSIGN_OR_RETURN(std::vector<int> att, Attention(b, cfg, long_qkv, heads / sp.size, p + "heads."));
  a["groups"] = int64_t{1};
  ASSIGN_OR_RETURN(int out, b.One("heads_to_seq", {att[0]}, a, {p + "attn.out"}));
  return std::vector<int>{out, att[1]};
}

absl::Status CheckGptSequenceParallel(const GptConfig& cfg, const GptTensorParallel& tp,
                                      const GptSequenceParallel& sp) {
  if (sp.size == 1) return absl::OkStatus();
  if (sp.rank < 0 || sp.rank >= sp.size) {
    return absl::InvalidArgumentError(absl::StrCat("sequence-parallel rank ", sp.rank, " of ", sp.size));
  }
  if (tp.size > 1 && (tp.two_d || tp.three_d || tp.sequence_parallel)) {
    return absl::InvalidArgumentError(
        "sequence parallelism composes with 1d tensor parallelism without its sequence_parallel only");
  }
  RETURN_IF_ERROR(parallel::CheckSequenceLayout(sp.Layout(cfg.seq_len)));
  if (sp.all_to_all && (cfg.n_head / tp.size) % sp.size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("all_to_all sequence parallelism needs the ", cfg.n_head / tp.size,
                                                   " heads of a rank divisible by ", sp.size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Graph> BuildGpt(const GptConfig& cfg, int64_t batch, const GptTensorParallel& tp,
                               GptPass pass, const GptSequenceParallel& seq) {
  if (cfg.n_layer < 1 || cfg.n_head < 1 || cfg.d_model < 1 || cfg.seq_len < 1 || cfg.vocab < 1 ||
      batch < 1 || cfg.d_model % cfg.n_head != 0) {
    return absl::InvalidArgumentError("invalid GPT configuration");
  }
  const bool decode = pass == GptPass::kDecode;
  if (decode && (tp.size != 1 || seq.size != 1)) {
    return absl::InvalidArgumentError("a decode graph is built whole (tensor- and sequence-parallel size 1)");
  }
  RETURN_IF_ERROR(CheckGptSequenceParallel(cfg, tp, seq));
  if ((tp.two_d || tp.three_d) && tp.size > 1) {
    if (tp.rank < 0 || tp.rank >= tp.size) {
      return absl::InvalidArgumentError(absl::StrCat("tensor-parallel rank ", tp.rank, " of ", tp.size));
    }
    return tp.three_d ? BuildGpt3d(cfg, batch, tp) : BuildGpt2d(cfg, batch, tp);
  }
  RETURN_IF_ERROR(CheckGptTensorParallel(cfg, tp, batch));
  if (tp.rank < 0 || tp.rank >= tp.size) {
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel rank ", tp.rank, " of ", tp.size));
  }
  const bool sp = tp.sequence_parallel && tp.size > 1;
  Graph g;
  Builder b(g);
  const int64_t B = batch, T = cfg.seq_len, C = cfg.d_model, V = cfg.vocab, L = cfg.n_layer;
  const int64_t P = tp.size;
  const bool split = P > 1;
  // Tokens per sequence in one run: the window (this rank's part of it under sequence
  // parallelism), or the one new token of a decode step.
  const int64_t Tn = decode ? 1 : T / seq.size;
  g.dims()["batch"] = B;
  g.dims()["seq"] = Tn;
  const ParamInit normal{ParamInit::Kind::kNormal, 0.02};
  const ParamInit zeros{ParamInit::Kind::kConstant, 0.0};
  const ParamInit ones{ParamInit::Kind::kConstant, 1.0};
  const Attrs ln = {{"eps", static_cast<double>(cfg.ln_eps)}};
  const Attrs group = {{"group", tp.group}};

  // A parameter whose global shape is `global`, split along `dim` (-1: whole) into P
  // parts (each of `interleave` blocks split separately).
  // Parameters of the sequence-split regions: whole, with partial gradients under sp.
  auto sp_param = [&](const std::string& name, Shape global, ParamInit init) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(Layout layout, MakeLayout(global, {}));
    if (sp) layout.partial_grad_axes = {"tensor"};
    const int id = g.AddParam(name, LocalShape(layout), init);
    g.mutable_value(id).layout = std::move(layout);
    return id;
  };
  auto param = [&](const std::string& name, Shape global, ParamInit init, int dim = -1,
                   int64_t interleave = 1) -> absl::StatusOr<int> {
    if (dim < 0) return sp_param(name, std::move(global), init);
    std::vector<DimSplit> splits;
    if (split) splits.push_back({dim, P, tp.rank, interleave, "tensor"});
    ASSIGN_OR_RETURN(Layout layout, MakeLayout(global, std::move(splits)));
    const int id = g.AddParam(name, LocalShape(layout), init);
    g.mutable_value(id).layout = std::move(layout);
    return id;
  };
  // Under sp, the residual stream holds this rank's tokens: [B·T/P, C].
  const Shape local_tokens = {B * T / P, C};
  const Shape all_tokens = {B, Tn, C};
  Attrs gather = group, scatter = group;
  gather["parts"] = P;
  gather["shape"] = std::vector<int64_t>(all_tokens);
  scatter["parts"] = P;
  scatter["shape"] = std::vector<int64_t>(local_tokens);
  // Into a column-parallel block: every rank needs every token.
  auto to_group = [&](int x, const std::string& name) -> absl::StatusOr<int> {
    if (!split) return x;
    if (sp) return b.One("all_gather", {x}, gather, {name});
    return b.One("copy_to_group", {x}, group, {name});
  };
  // Out of a row-parallel block: partial products summed over the group (this rank's
  // tokens only under sp), then the bias once.
  auto from_group = [&](int partial, const std::string& name) -> absl::StatusOr<int> {
    if (sp) return b.One("reduce_scatter", {partial}, scatter, {name});
    return b.One("reduce_from_group", {partial}, group, {name});
  };
  auto row_linear = [&](int x, int w, int bias, const std::string& name) -> absl::StatusOr<int> {
    if (!split) return b.One("matmul", {x, w, bias}, {}, {name});
    ASSIGN_OR_RETURN(int partial, b.One("matmul", {x, w}, {}, {name + ".partial"}));
    ASSIGN_OR_RETURN(int sum, from_group(partial, name + ".sum"));
    return b.One("bias_add", {sum, bias}, {}, {name});
  };

  g.SetLayer(0);  // the embeddings
  int ids = g.AddInput("ids", {B, Tn}, DType::kI32);
  int targets = decode ? -1 : g.AddInput("targets", {B, Tn}, DType::kI32);
  int positions = g.AddInput("positions", {B, Tn}, DType::kI32);
  ASSIGN_OR_RETURN(int wte, param("wte.weight", {V, C}, normal, 0));
  ASSIGN_OR_RETURN(int wpe, param("wpe.weight", {T, C}, normal));
  const Attrs shard = {{"start", tp.rank * (V / P)}, {"size", V / P}};

  int tok = -1, local_targets = targets;
  if (split) {
    ASSIGN_OR_RETURN(int local_ids, b.One("vocab_shard_ids", {ids}, shard, {"ids.local"}));
    ASSIGN_OR_RETURN(int partial, b.One("embedding", {local_ids, wte}, {}, {"tok_emb.partial"}));
    ASSIGN_OR_RETURN(tok, from_group(partial, "tok_emb"));
  } else {
    ASSIGN_OR_RETURN(tok, b.One("embedding", {ids, wte}, {}, {"tok_emb"}));
  }
  int local_positions = positions;
  if (sp) {
    ASSIGN_OR_RETURN(local_positions,
                     b.One("shard_rows", {positions},
                           {{"parts", P}, {"part", tp.rank}, {"shape", std::vector<int64_t>{B * T / P}}},
                           {"positions.local"}));
  }
  ASSIGN_OR_RETURN(int pos, b.One("embedding", {local_positions, wpe}, {}, {"pos_emb"}));
  ASSIGN_OR_RETURN(int x, b.One("add", {tok, pos}, {}, {"h.in"}));

  for (int64_t l = 0; l < L; ++l) {
    g.SetLayer(static_cast<int>(l) + 1);
    const std::string p = absl::StrCat("h.", l, ".");
    // 1d: column-parallel c_attn / c_fc (weight columns, bias), row-parallel projections
    // (weight rows; bias whole), layer norms whole.
    ASSIGN_OR_RETURN(const LayerParams w,
                     DeclareLayer(p, C, L, [&](const std::string& name, Shape global, ParamInit init,
                                               Role role, int64_t interleave) {
                       const int dim = role == Role::kColumnWeight ? 1
                                       : role == Role::kColumnBias || role == Role::kRowWeight ? 0
                                                                                                : -1;
                       return param(name, std::move(global), init, dim, interleave);
                     }));
    const auto [ln1_w, ln1_b, attn_w, attn_b, aproj_w, aproj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w,
                mproj_b] = w;

    ASSIGN_OR_RETURN(auto ln1, b.Many("layer_norm", {x, ln1_w, ln1_b}, ln,
                                      {p + "ln_1.out", p + "ln_1.mean", p + "ln_1.rstd"}));
    ASSIGN_OR_RETURN(int attn_in, to_group(ln1[0], p + "attn.in"));
    ASSIGN_OR_RETURN(int qkv, b.One("matmul", {attn_in, attn_w, attn_b}, {}, {p + "attn.qkv"}));
    std::vector<int> att;
    if (decode) {
      const int k_cache = g.AddState(p + "attn.k_cache", {B, T, C});
      const int v_cache = g.AddState(p + "attn.v_cache", {B, T, C});
      ASSIGN_OR_RETURN(att, b.Many("attention_decode", {qkv, positions, k_cache, v_cache},
                                   {{"n_head", cfg.n_head}}, {p + "attn.out"}));
    } else if (seq.size > 1) {
      ASSIGN_OR_RETURN(att, SequenceAttention(b, cfg, qkv, cfg.n_head / P, seq, p));
    } else {
      ASSIGN_OR_RETURN(att, Attention(b, cfg, qkv, cfg.n_head / P, p));
    }
    ASSIGN_OR_RETURN(int ao, row_linear(att[0], aproj_w, aproj_b, p + "attn.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, ao}, {}, {p + "res_1"}));
    ASSIGN_OR_RETURN(auto ln2, b.Many("layer_norm", {x, ln2_w, ln2_b}, ln,
                                      {p + "ln_2.out", p + "ln_2.mean", p + "ln_2.rstd"}));
    ASSIGN_OR_RETURN(int mlp_in, to_group(ln2[0], p + "mlp.in"));
    ASSIGN_OR_RETURN(int fc, b.One("matmul", {mlp_in, fc_w, fc_b}, {}, {p + "mlp.fc"}));
    ASSIGN_OR_RETURN(int act, b.One("gelu", {fc}, {}, {p + "mlp.act"}));
    ASSIGN_OR_RETURN(int mo, row_linear(act, mproj_w, mproj_b, p + "mlp.proj"));
    ASSIGN_OR_RETURN(x, b.One("add", {x, mo}, {}, {p + "res_2"}));
  }
  g.SetLayer(static_cast<int>(L) + 1);  // final norm, head, loss
  ASSIGN_OR_RETURN(int lnf_w, param("ln_f.weight", {C}, ones));
  ASSIGN_OR_RETURN(int lnf_b, param("ln_f.bias", {C}, zeros));
  ASSIGN_OR_RETURN(auto lnf, b.Many("layer_norm", {x, lnf_w, lnf_b}, ln,
                                    {"ln_f.out", "ln_f.mean", "ln_f.rstd"}));
  ASSIGN_OR_RETURN(int head_in, to_group(lnf[0], "head.in"));
  ASSIGN_OR_RETURN(int logits, b.One("matmul", {head_in, wte}, {{"transpose_w", int64_t{1}}},
                                     {"logits"}));
  if (decode) {
    g.MarkOutput(logits);
    return g;
  }
  std::vector<int> xent;
  if (split) {
    // The targets' vocabulary shard belongs to the loss (the last pipeline stage reads
    // the targets itself).
    ASSIGN_OR_RETURN(local_targets, b.One("vocab_shard_ids", {targets}, shard, {"targets.local"}));
    Attrs a = group;
    ASSIGN_OR_RETURN(xent, b.Many("vocab_parallel_xent", {logits, local_targets}, a,
                                  {"token_loss", "token_lse"}));
  } else {
    ASSIGN_OR_RETURN(xent, b.Many("softmax_xent", {logits, targets}, {}, {"token_loss", "token_lse"}));
  }
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
