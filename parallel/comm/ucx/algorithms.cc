// Collective schedules of algorithms.h. Indices: n ranks, r this rank, left = r-1 and
// right = r+1 around the ring; a "task" is one chunk received at one step.
#include "parallel/comm/ucx/algorithms.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "parallel/comm/ucx/reduce.h"

namespace colossal::parallel::ucx {
namespace {

constexpr int kRecvWindow = 4;  // receives posted ahead of the one being reduced

int Mod(int a, int n) { return ((a % n) + n) % n; }

// Balanced split of `count` elements into n segments.
struct Segments {
  Segments(int64_t count, int n) : base(count / n), rem(count % n) {}
  int64_t Offset(int k) const { return k * base + std::min<int64_t>(k, rem); }
  int64_t Count(int k) const { return base + (k < rem ? 1 : 0); }
  int64_t base, rem;
};

// Elements per pipelined chunk: chunk_bytes rounded down to whole 64-byte lines.
int64_t ChunkElems(const Op& op, int64_t elem_bytes) {
  int64_t elems = std::max<int64_t>(1, op.options().chunk_bytes / elem_bytes);
  int64_t line = 64 / elem_bytes;
  return elems > line ? elems / line * line : elems;
}

// One chunk received at step t: elements [off, off + len) of the buffer.
struct Task {
  int t;
  int64_t chunk;
  int64_t off;
  int64_t len;
};

// Slot of (step, chunk), the same on sender and receiver; unique within any window of
// messages in flight for chunks_per_step < 2^15.
uint32_t Slot(int t, int64_t chunk, int64_t chunks_per_step) {
  return static_cast<uint32_t>((t * chunks_per_step + chunk) & 0xffff);
}

}  // namespace

OpTask RingAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype) {
  const int n = op.size(), r = op.rank();
  if (n == 1 || count == 0) co_return absl::OkStatus();
  const int64_t es = kernels::DTypeSize(dtype);
  const Segments seg(count, n);
  const int64_t ce = ChunkElems(op, es);
  const int64_t chunks_per_step = (seg.Count(0) + ce - 1) / ce;
  const int left = Mod(r - 1, n), right = Mod(r + 1, n);
  const int steps = 2 * (n - 1);  // n-1 reduce-scatter steps, then n-1 all-gather steps
  // At step t this rank receives segment (r-t-2) and sends segment (r-t-1): for t < n-1
  // it adds what it receives into its own copy; after that it receives final sums.
  std::vector<Task> tasks;
  for (int t = 0; t < steps; ++t) {
    const int k = Mod(r - t - 2, n);
    for (int64_t c = 0, e = 0; e < seg.Count(k); ++c, e += ce) {
      tasks.push_back({t, c, seg.Offset(k) + e, std::min(ce, seg.Count(k) - e)});
    }
  }
  char* slots = op.Scratch(static_cast<size_t>(kRecvWindow * ce * es));
  std::vector<Req*> recvs(tasks.size(), nullptr);
  auto post_recv = [&](size_t i) {
    const Task& task = tasks[i];
    char* mine = buf + task.off * es;
    const uint32_t slot = Slot(task.t, task.chunk, chunks_per_step);
    recvs[i] = task.t < n - 1
                   ? op.RecvReduce(mine, mine, slots + (i % kRecvWindow) * ce * es,
                                   task.len * es, left, slot, dtype)
                   : op.Recv(mine, task.len * es, left, slot);
  };
  // Step 0 sends segment r-1 as it is.
  {
    const int k = Mod(r - 1, n);
    for (int64_t c = 0, e = 0; e < seg.Count(k); ++c, e += ce) {
      op.Send(buf + (seg.Offset(k) + e) * es, std::min(ce, seg.Count(k) - e) * es, right,
              Slot(0, c, chunks_per_step));
    }
  }
  for (size_t i = 0; i < tasks.size() && i < kRecvWindow; ++i) post_recv(i);
  for (size_t i = 0; i < tasks.size(); ++i) {
    co_await op.Wait(recvs[i]);
    const Task& task = tasks[i];
    char* mine = buf + task.off * es;
    if (task.t < n - 1) op.FinishReduce(recvs[i]);
    if (i + kRecvWindow < tasks.size()) post_recv(i + kRecvWindow);
    if (task.t + 1 < steps) {
      op.Send(mine, task.len * es, right, Slot(task.t + 1, task.chunk, chunks_per_step));
    }
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask RecursiveDoublingAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype) {
  const int n = op.size(), r = op.rank();
  if (n == 1 || count == 0) co_return absl::OkStatus();
  const size_t bytes = static_cast<size_t>(count * kernels::DTypeSize(dtype));
  int p = 1;
  while (p * 2 <= n) p *= 2;
  const int rem = n - p;
  char* tmp = op.Scratch(bytes);
  uint32_t slot = 0;
  if (r >= p) {  // fold out: hand the data to r-p, get the sum back
    Req* s = op.Send(buf, bytes, r - p, slot);
    co_await op.Wait(s);
    Req* back = op.Recv(buf, bytes, r - p, 1000);
    co_await op.Wait(back);
    co_return absl::OkStatus();
  }
  if (r < rem) {
    Req* in = op.Recv(tmp, bytes, r + p, slot);
    co_await op.Wait(in);
    SumInto(buf, buf, tmp, count, dtype);
  }
  for (int mask = 1; mask < p; mask <<= 1) {
    ++slot;
    const int partner = r ^ mask;
    Req* s = op.Send(buf, bytes, partner, slot);
    Req* in = op.Recv(tmp, bytes, partner, slot);
    co_await op.Wait(s, in);
    SumInto(buf, buf, tmp, count, dtype);
  }
  if (r < rem) {
    Req* s = op.Send(buf, bytes, r + p, 1000);
    co_await op.Wait(s);
  }
  co_return absl::OkStatus();
}

OpTask RingReduceScatter(Op& op, const char* send, char* recv, int64_t count,
                         kernels::DType dtype) {
  const int n = op.size(), r = op.rank();
  const int64_t es = kernels::DTypeSize(dtype);
  if (n == 1) {
    if (count > 0 && recv != send) std::memmove(recv, send, count * es);
    co_return absl::OkStatus();
  }
  if (count == 0) co_return absl::OkStatus();
  const int64_t ce = ChunkElems(op, es);
  const int64_t chunks = (count + ce - 1) / ce;
  const int left = Mod(r - 1, n), right = Mod(r + 1, n);
  // Step t: receive the partial sum of segment (r-t-2) from the left, add this rank's
  // part of it, and (except at the last step, whose result is segment r) pass it on.
  // Partial sums live in `recv`; a chunk is rewritten only after its previous send ended.
  std::vector<Task> tasks;
  for (int t = 0; t < n - 1; ++t) {
    const int k = Mod(r - t - 2, n);
    for (int64_t c = 0; c < chunks; ++c) {
      tasks.push_back({t, c, k * count + c * ce, std::min(ce, count - c * ce)});
    }
  }
  char* slots = op.Scratch(static_cast<size_t>(kRecvWindow * ce * es));
  std::vector<Req*> recvs(tasks.size(), nullptr);
  std::vector<Req*> chunk_send(chunks, nullptr);
  auto post_recv = [&](size_t i) {
    const Task& task = tasks[i];
    recvs[i] = op.RecvReduce(recv + task.chunk * ce * es, send + task.off * es,
                             slots + (i % kRecvWindow) * ce * es, task.len * es, left,
                             Slot(task.t, task.chunk, chunks), dtype);
  };
  {
    const int k = Mod(r - 1, n);
    for (int64_t c = 0; c < chunks; ++c) {
      op.Send(send + (k * count + c * ce) * es, std::min(ce, count - c * ce) * es, right,
              Slot(0, c, chunks));
    }
  }
  for (size_t i = 0; i < tasks.size() && i < kRecvWindow; ++i) post_recv(i);
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Task& task = tasks[i];
    char* out = recv + task.chunk * ce * es;
    // The chunk's previous send must have ended before its sum is rewritten (awaiting
    // the receive may form the sum at once: RecvReduce).
    if (chunk_send[task.chunk] != nullptr) {
      co_await op.Wait(chunk_send[task.chunk]);
      chunk_send[task.chunk] = nullptr;
    }
    co_await op.Wait(recvs[i]);
    op.FinishReduce(recvs[i]);
    if (i + kRecvWindow < tasks.size()) post_recv(i + kRecvWindow);
    if (task.t + 1 < n - 1) {
      chunk_send[task.chunk] =
          op.Send(out, task.len * es, right, Slot(task.t + 1, task.chunk, chunks));
    }
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask RingAllGather(Op& op, const char* send, char* recv, int64_t bytes_per_rank) {
  const int n = op.size(), r = op.rank();
  const int64_t b = bytes_per_rank;
  if (b == 0) co_return absl::OkStatus();
  if (n == 1) {
    if (recv != send) std::memmove(recv, send, b);
    co_return absl::OkStatus();
  }
  const int64_t ce = ChunkElems(op, 1);
  const int64_t chunks = (b + ce - 1) / ce;
  const int left = Mod(r - 1, n), right = Mod(r + 1, n);
  // Step t: receive block (r-t-1) from the left into place and forward it (t < n-2).
  for (int64_t c = 0; c < chunks; ++c) {
    op.Send(send + c * ce, std::min(ce, b - c * ce), right, Slot(0, c, chunks));
  }
  std::vector<Task> tasks;
  std::vector<Req*> recvs;
  for (int t = 0; t < n - 1; ++t) {
    const int k = Mod(r - t - 1, n);
    for (int64_t c = 0; c < chunks; ++c) {
      tasks.push_back({t, c, k * b + c * ce, std::min(ce, b - c * ce)});
      recvs.push_back(op.Recv(recv + tasks.back().off, tasks.back().len, left,
                              Slot(t, c, chunks)));
    }
  }
  if (recv + r * b != send) std::memcpy(recv + r * b, send, b);
  for (size_t i = 0; i < tasks.size(); ++i) {
    co_await op.Wait(recvs[i]);
    const Task& task = tasks[i];
    if (task.t + 1 < n - 1) {
      op.Send(recv + task.off, task.len, right, Slot(task.t + 1, task.chunk, chunks));
    }
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

// Direct ("flat") schedules for ranks that all share a machine: every rank exchanges with
// every other at once, so a message never waits on a forwarding hop (n-1 hops in the
// ring). Same bytes per rank as the ring; no pipelining (messages ≤ chunk_bytes).
// Peers are visited in the order r+1, r+2, ... so that n ranks do not all start with the
// same one.

// Every rank sends the block at send + k·send_stride to each peer k and receives peer k's
// block into recv + k·b; its own block is copied. All-gather: send_stride 0; all-to-all: b.
static OpTask ExchangeWithAll(Op& op, const char* send, int64_t send_stride, char* recv,
                              int64_t b) {
  const int n = op.size(), r = op.rank();
  if (b == 0) co_return absl::OkStatus();
  for (int j = 1; j < n; ++j) {
    const int k = Mod(r + j, n);
    op.Recv(recv + k * b, b, k, 0);
    op.Send(send + k * send_stride, b, k, 0);
  }
  const char* own = send + r * send_stride;
  if (recv + r * b != own) std::memmove(recv + r * b, own, b);
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask FlatAllGather(Op& op, const char* send, char* recv, int64_t bytes_per_rank) {
  return ExchangeWithAll(op, send, 0, recv, bytes_per_rank);
}

OpTask FlatReduceScatter(Op& op, const char* send, char* recv, int64_t count,
                         kernels::DType dtype) {
  const int n = op.size(), r = op.rank();
  const int64_t es = kernels::DTypeSize(dtype);
  const int64_t bytes = count * es;
  if (count == 0) co_return absl::OkStatus();
  // One scratch slot per peer, 64-byte aligned.
  const int64_t slot_bytes = (bytes + 63) / 64 * 64;
  char* slots = op.Scratch(static_cast<size_t>((n - 1) * slot_bytes));
  std::vector<Req*> recvs(n, nullptr);
  for (int j = 1; j < n; ++j) {
    const int k = Mod(r + j, n);
    recvs[j] = op.RecvReduce(recv, j == 1 ? send + r * bytes : recv,
                             slots + (j - 1) * slot_bytes, bytes, k, 0, dtype);
    op.Send(send + k * bytes, bytes, k, 0);
  }
  // Sum in a fixed order (own part, then r+1, r+2, ...), each addend as it comes in.
  for (int j = 1; j < n; ++j) {
    co_await op.Wait(recvs[j]);
    op.FinishReduce(recvs[j]);
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask FlatAllReduce(Op& op, char* buf, int64_t count, kernels::DType dtype) {
  const int n = op.size(), r = op.rank();
  if (n == 1 || count == 0) co_return absl::OkStatus();
  const int64_t es = kernels::DTypeSize(dtype);
  const Segments seg(count, n);
  const int64_t slot_bytes = (seg.Count(0) * es + 63) / 64 * 64;
  char* slots = op.Scratch(static_cast<size_t>((n - 1) * slot_bytes));
  char* mine = buf + seg.Offset(r) * es;
  // Reduce-scatter (slot 0): peer k reads our part of segment k, we read theirs of
  // segment r. All-gather (slot 1): peer k's sum of segment k lands in place. Its receive
  // may be posted now: peer k sends that sum only after it has taken in our part of
  // segment k, so nothing lands there while our slot-0 message still reads it.
  std::vector<Req*> recvs(n, nullptr);
  for (int j = 1; j < n; ++j) {
    const int k = Mod(r + j, n);
    recvs[j] = op.RecvReduce(mine, mine, slots + (j - 1) * slot_bytes, seg.Count(r) * es, k, 0,
                             dtype);
    op.Send(buf + seg.Offset(k) * es, seg.Count(k) * es, k, 0);
    op.Recv(buf + seg.Offset(k) * es, seg.Count(k) * es, k, 1);
  }
  for (int j = 1; j < n; ++j) {
    co_await op.Wait(recvs[j]);
    op.FinishReduce(recvs[j]);
  }
  for (int j = 1; j < n; ++j) op.Send(mine, seg.Count(r) * es, Mod(r + j, n), 1);
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask TreeBroadcast(Op& op, char* buf, int64_t bytes, int root) {
  const int n = op.size(), r = op.rank();
  if (n == 1 || bytes == 0) co_return absl::OkStatus();
  const int rel = Mod(r - root, n);
  int mask = 1;
  while (mask < n) {
    if (rel & mask) {
      Req* in = op.Recv(buf, bytes, Mod(rel - mask + root, n), 0);
      co_await op.Wait(in);
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (rel + mask < n) op.Send(buf, bytes, Mod(rel + mask + root, n), 0);
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask ChainBroadcast(Op& op, char* buf, int64_t bytes, int root) {
  const int n = op.size(), r = op.rank();
  if (n == 1 || bytes == 0) co_return absl::OkStatus();
  const int pos = Mod(r - root, n);
  const int prev = Mod(r - 1, n), next = Mod(r + 1, n);
  const int64_t ce = ChunkElems(op, 1);
  const int64_t chunks = (bytes + ce - 1) / ce;
  if (pos == 0) {
    for (int64_t c = 0; c < chunks; ++c) {
      op.Send(buf + c * ce, std::min(ce, bytes - c * ce), next, Slot(0, c, chunks));
    }
  } else {
    std::vector<Req*> recvs;
    for (int64_t c = 0; c < chunks; ++c) {
      recvs.push_back(op.Recv(buf + c * ce, std::min(ce, bytes - c * ce), prev, Slot(0, c, chunks)));
    }
    for (int64_t c = 0; c < chunks; ++c) {
      co_await op.Wait(recvs[c]);
      if (pos + 1 < n) op.Send(buf + c * ce, std::min(ce, bytes - c * ce), next, Slot(0, c, chunks));
    }
  }
  co_await op.WaitAll();
  co_return absl::OkStatus();
}

OpTask PairwiseAllToAll(Op& op, const char* send, char* recv, int64_t bytes_per_rank) {
  return ExchangeWithAll(op, send, bytes_per_rank, recv, bytes_per_rank);
}

OpTask DisseminationBarrier(Op& op) {
  const int n = op.size(), r = op.rank();
  static char token = 0;
  char sink[1];
  uint32_t round = 0;
  for (int k = 1; k < n; k <<= 1, ++round) {
    Req* s = op.Send(&token, 0, Mod(r + k, n), round);
    Req* in = op.Recv(sink, 0, Mod(r - k, n), round);
    co_await op.Wait(s, in);
  }
  co_return absl::OkStatus();
}

OpTask PointToPointSend(Op& op, const char* buf, int64_t bytes, int peer, uint32_t tag) {
  Req* s = op.Send(buf, static_cast<size_t>(bytes), peer, tag);
  co_await op.Wait(s);
  co_return absl::OkStatus();
}

OpTask PointToPointRecv(Op& op, char* buf, int64_t bytes, int peer, uint32_t tag) {
  Req* in = op.Recv(buf, static_cast<size_t>(bytes), peer, tag);
  co_await op.Wait(in);
  co_return absl::OkStatus();
}

OpTask ExchangeValues(Op& op, std::vector<int> members, uint32_t payload,
                      std::vector<uint64_t> out, std::vector<uint64_t>* in) {
  std::vector<uint64_t> got(members.size(), 0);  // in the frame: outlives a failed wait
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == op.rank()) {
      got[i] = out[i];
      continue;
    }
    op.Send(&out[i], sizeof(uint64_t), members[i], payload);
    op.Recv(&got[i], sizeof(uint64_t), members[i], payload);
  }
  co_await op.WaitAll();
  *in = got;
  co_return absl::OkStatus();
}

}  // namespace colossal::parallel::ucx
