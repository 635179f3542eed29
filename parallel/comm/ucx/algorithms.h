// The project's own collective algorithms over the engine's tagged sends and receives
// (not UCX collectives). Each is an op body: a coroutine that runs on a driver thread
// and co_awaits its requests (engine.h). Owns message schedules and reductions; does
// not own failure handling or deadlines (the engine fails a stuck op from outside).
//
//   RingAllReduce      reduce-scatter + all-gather around the ring in 2(n-1) steps,
//                      pipelined in chunks of options().chunk_bytes: the receive of the
//                      next chunks is posted before the current chunk is reduced, into a
//                      small ring of scratch slots; sums are in place in `buf`. Reductions
//                      receive with Op::RecvReduce: a direct copy is read in 256 KiB
//                      pieces, each summed while in cache (also the reduce-scatters and
//                      FlatAllReduce).
//                      Bus traffic 2(n-1)/n · bytes per rank (bandwidth-optimal).
//   RecursiveDoublingAllReduce   log2(p) exchange steps of the whole buffer (p the largest
//                      power of two ≤ n; the other ranks fold in and out): latency-optimal
//                      for small messages.
//   RingReduceScatter  n-1 steps; partial sums are staged in `recv` itself.
//   RingAllGather      n-1 steps, received chunks land in place and are forwarded.
//   FlatAllReduce / FlatReduceScatter / FlatAllGather   every rank exchanges with every
//                      other at once (AllReduce: a flat reduce-scatter, then a flat
//                      all-gather): one step (two for AllReduce) instead of the ring's n-1
//                      forwarding hops, for ranks of one machine (direct copies) and
//                      messages up to chunk_bytes; scratch (n-1) messages.
//   TreeBroadcast      binomial tree (small); ChainBroadcast pipelined chain (large).
//   PairwiseAllToAll   every pair exchanges at once; DisseminationBarrier log2(n) rounds.
// Every rank ends with bit-identical sums: each element's sum is formed by one rank
// (ring) or by both partners of a commutative add (recursive doubling).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/common/kernel.h"
#include "parallel/comm/ucx/engine.h"

namespace colossal::parallel::ucx {

OpTask RingAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype);
OpTask RecursiveDoublingAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype);
OpTask RingReduceScatter(Op& op, const char* send, char* recv, int64_t count,
                         kernels::DType dtype);
OpTask RingAllGather(Op& op, const char* send, char* recv, int64_t bytes_per_rank);
OpTask FlatAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype);
OpTask FlatReduceScatter(Op& op, const char* send, char* recv, int64_t count,
                         kernels::DType dtype);
OpTask FlatAllGather(Op& op, const char* send, char* recv, int64_t bytes_per_rank);
OpTask TreeBroadcast(Op& op, char* buf, int64_t bytes, int root);
OpTask ChainBroadcast(Op& op, char* buf, int64_t bytes, int root);
OpTask PairwiseAllToAll(Op& op, const char* send, char* recv, int64_t bytes_per_rank);
OpTask DisseminationBarrier(Op& op);
OpTask PointToPointSend(Op& op, const char* buf, int64_t bytes, int peer, uint32_t tag);
OpTask PointToPointRecv(Op& op, char* buf, int64_t bytes, int peer, uint32_t tag);
// Control: every member of `members` (comm ranks, ascending, including this rank) sends
// out[i] to members[i]; on success (*in)[i] is what members[i] sent to this rank.
OpTask ExchangeValues(Op& op, std::vector<int> members, uint32_t payload,
                      std::vector<uint64_t> out, std::vector<uint64_t>* in);

}  // namespace colossal::parallel::ucx
