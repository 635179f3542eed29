// Per-op communication volumes.
#include "graph/comm_volume.h"

#include "graph/op_registry.h"
#include "parallel/comm/communicator.h"

namespace colossal::graph {

std::map<std::string, int64_t> CommBytesPerRun(const Graph& g, const GroupSizes& sizes) {
  using parallel::Collective;
  using parallel::SentByRing;
  std::map<std::string, int64_t> out;
  auto size_of = [&](const std::string& name) {
    auto it = sizes.find(name);
    return it == sizes.end() ? 1 : it->second;
  };
  auto attr = [](const Node& n, const char* key) -> std::string {
    auto it = n.attrs.find(key);
    return it == n.attrs.end() ? "" : std::get<std::string>(it->second);
  };
  for (const Node& n : g.nodes()) {
    const OpDef* def = FindOp(n.op);
    if (def == nullptr || !def->communicates) continue;
    const std::string a = attr(n, "group"), b = attr(n, "group_b"), c = attr(n, "group_c");
    const int pa = size_of(a), pb = size_of(b), pc = size_of(c);
    auto in = [&](int i) { return g.value(n.inputs[i]).bytes(); };
    auto res = [&](int i) { return g.value(n.outputs[i]).bytes(); };
    int64_t& sa = out[a];
    if (n.op == "reduce_from_group" || n.op == "all_reduce") {
      sa += SentByRing(Collective::kAllReduce, res(0), pa);
    } else if (n.op == "all_gather") {
      sa += SentByRing(Collective::kAllGather, in(0), pa);
    } else if (n.op == "reduce_scatter") {
      sa += SentByRing(Collective::kReduceScatter, res(0), pa);
    } else if (n.op == "vocab_parallel_xent") {
      sa += SentByRing(Collective::kAllGather, 2 * res(0), pa);  // (lse, target logit) per row
    } else if (n.op == "summa_matmul") {
      // q steps: the x block broadcast along the row, the w block along the column.
      const int64_t q = n.IntAttr("q");
      sa += q * SentByRing(Collective::kBroadcast, in(0), pa);
      out[b] += q * SentByRing(Collective::kBroadcast, in(1), pb);
    } else if (n.op == "summa_matmul_nt") {
      out[b] += SentByRing(Collective::kAllGather, in(1), pb);
      sa += SentByRing(Collective::kReduceScatter, res(0), pa);
    } else if (n.op == "summa_matmul_tn") {
      sa += SentByRing(Collective::kAllGather, in(0), pa);
      out[b] += SentByRing(Collective::kReduceScatter, res(0), pb);
    } else if (n.op == "linear_3d") {
      // x gathered over group, w over group_b, the product reduce-scattered over group_c.
      sa += SentByRing(Collective::kAllGather, in(0), pa);
      out[b] += SentByRing(Collective::kAllGather, in(1), pb);
      out[c] += SentByRing(Collective::kReduceScatter, res(0), pc);
    } else if (n.op == "linear_3d_backward") {
      // dy gathered over group_c; x and w gathered again; dx and dw reduce-scattered.
      out[c] += SentByRing(Collective::kAllGather, in(0), pc);
      sa += SentByRing(Collective::kAllGather, in(1), pa) + SentByRing(Collective::kReduceScatter, res(0), pa);
      out[b] += SentByRing(Collective::kAllGather, in(2), pb) +
                SentByRing(Collective::kReduceScatter, res(1), pb);
    } else if (n.op == "layer_norm_2d") {
      sa += 2 * SentByRing(Collective::kAllReduce, res(1), pa);  // the row sums, twice
    } else if (n.op == "layer_norm_2d_backward") {
      sa += SentByRing(Collective::kAllReduce, 2 * g.value(n.inputs[3]).bytes(), pa);
    } else if (n.op == "embedding_2d") {
      sa += SentByRing(Collective::kReduceScatter, res(0), pa);
    } else if (n.op == "embedding_2d_backward") {
      sa += SentByRing(Collective::kAllGather, in(1), pa);
    } else if (n.op == "ring_attention" || n.op == "ring_attention_backward") {
      // K|V ([B, N, 2C], 2/3 of qkv) sent S − 1 times; the backward also sends S − 1
      // parts of dK|dV home.
      const int64_t kv = 2 * in(n.op == "ring_attention" ? 0 : 1) / 3;
      sa += (pa - 1) * kv * (n.op == "ring_attention_backward" ? 2 : 1);
    } else if (n.op == "seq_to_heads" || n.op == "heads_to_seq") {
      // One all-to-all: every peer gets 1/S of this rank's elements.
      sa += SentByRing(Collective::kAllToAll, in(0) / pa, pa);
    }
  }
  for (auto it = out.begin(); it != out.end();) it = it->second == 0 ? out.erase(it) : std::next(it);
  return out;
}

}  // namespace colossal::graph
