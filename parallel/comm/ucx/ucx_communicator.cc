// UcxCommunicator: argument checks, algorithm choice and Split over the engine.
#include "parallel/comm/ucx/ucx_communicator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/comm/ucx/algorithms.h"
#include "parallel/comm/ucx/engine.h"
#include "parallel/comm/ucx/reduce.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

using ucx::Engine;
using ucx::Op;
using ucx::OpKind;

class UcxWork : public Work {
 public:
  UcxWork(std::shared_ptr<Engine> engine, std::shared_ptr<Op> op)
      : engine_(std::move(engine)), op_(std::move(op)) {}
  absl::Status Wait() override { return engine_->Wait(*op_); }
  bool Done() override { return engine_->Poll(*op_); }

 private:
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<Op> op_;
};

// Op names for errors, formatted from Op::args only when an error needs them.
// args: [0] count or bytes, [1] dtype, [2] root / peer / algorithm, [3] tag.
std::string DtypeArg(const Op& op) {
  return std::string(kernels::DTypeName(static_cast<DType>(op.args[1])));
}
std::string DescribeAllReduce(const Op& op) {
  return absl::StrCat("AllReduce(count=", op.args[0], ", ", DtypeArg(op), ", ",
                      op.args[2] ? "recursive doubling" : "ring", ") #", op.seq);
}
std::string DescribeReduceScatter(const Op& op) {
  return absl::StrCat("ReduceScatter(count=", op.args[0], ", ", DtypeArg(op), ") #", op.seq);
}
std::string DescribeAllGather(const Op& op) {
  return absl::StrCat("AllGather(count=", op.args[0], ", ", DtypeArg(op), ") #", op.seq);
}
std::string DescribeBroadcast(const Op& op) {
  return absl::StrCat("Broadcast(count=", op.args[0], ", ", DtypeArg(op), ", root=", op.args[2],
                      ") #", op.seq);
}
std::string DescribeAllToAll(const Op& op) {
  return absl::StrCat("AllToAll(count=", op.args[0], ", ", DtypeArg(op), ") #", op.seq);
}
std::string DescribeBarrier(const Op& op) { return absl::StrCat("Barrier #", op.seq); }
std::string DescribeSend(const Op& op) {
  return absl::StrCat("Send(", op.args[0], " bytes to rank ", op.args[2], ", tag ", op.args[3], ")");
}
std::string DescribeRecv(const Op& op) {
  return absl::StrCat("Recv(", op.args[0], " bytes from rank ", op.args[2], ", tag ", op.args[3],
                      ")");
}

std::unique_ptr<Work> Invalid(std::string message) {
  return std::make_unique<DoneWork>(absl::InvalidArgumentError(std::move(message)));
}

uint64_t HashRanks(const std::vector<int>& ranks) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (int r : ranks) {
    for (int i = 0; i < 4; ++i) {
      h ^= (static_cast<uint32_t>(r) >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return h;
}

class UcxCommunicator : public Communicator {
 public:
  UcxCommunicator(std::shared_ptr<Engine> engine, std::shared_ptr<ucx::CommState> state)
      : engine_(std::move(engine)), state_(std::move(state)) {}
  ~UcxCommunicator() override { engine_->CloseComm(state_.get()); }

  int rank() const override { return state_->rank; }
  int size() const override { return state_->size; }
  const std::vector<int>& global_ranks() const override { return state_->global_ranks; }
  int64_t bytes_sent() const override { return state_->bytes_sent.load(std::memory_order_relaxed); }

  std::unique_ptr<Work> AllReduce(void* buf, int64_t count, DType dtype) override {
    if (auto bad = CheckReduce("AllReduce", buf, buf, count, dtype)) return bad;
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    const bool small = bytes < state_->options.small_bytes || count < size();
    const int64_t es = kernels::DTypeSize(dtype);
    const int64_t segment_bytes = (count + size() - 1) / size() * es;
    const bool flat = !small && segment_bytes < kFlatAllReduceMaxBytes && Flat(segment_bytes);
    auto op = NewCollective(&DescribeAllReduce, count, dtype, small ? 1 : flat ? 2 : 0);
    char* data = static_cast<char*>(buf);
    op->task = small  ? ucx::RecursiveDoublingAllReduce(*op, data, count, dtype)
               : flat ? ucx::FlatAllReduce(*op, data, count, dtype)
                      : ucx::RingAllReduce(*op, data, count, dtype);
    return Submit(std::move(op), bytes);
  }

  std::unique_ptr<Work> ReduceScatter(const void* send, void* recv, int64_t count,
                                      DType dtype) override {
    if (auto bad = CheckReduce("ReduceScatter", send, recv, count, dtype)) return bad;
    auto op = NewCollective(&DescribeReduceScatter, count, dtype);
    if (Flat(count * kernels::DTypeSize(dtype))) {
      op->task = ucx::FlatReduceScatter(*op, static_cast<const char*>(send),
                                        static_cast<char*>(recv), count, dtype);
    } else {
      op->task = ucx::RingReduceScatter(*op, static_cast<const char*>(send),
                                        static_cast<char*>(recv), count, dtype);
    }
    return Submit(std::move(op), size() * count * kernels::DTypeSize(dtype));
  }

  std::unique_ptr<Work> AllGather(const void* send, void* recv, int64_t count,
                                  DType dtype) override {
    if (auto bad = CheckBuffers("AllGather", send, recv, count)) return bad;
    auto op = NewCollective(&DescribeAllGather, count, dtype);
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    op->task = Flat(bytes) ? ucx::FlatAllGather(*op, static_cast<const char*>(send),
                                                static_cast<char*>(recv), bytes)
                           : ucx::RingAllGather(*op, static_cast<const char*>(send),
                                                static_cast<char*>(recv), bytes);
    return Submit(std::move(op), size() * count * kernels::DTypeSize(dtype));
  }

  std::unique_ptr<Work> Broadcast(void* buf, int64_t count, DType dtype, int root) override {
    if (auto bad = CheckBuffers("Broadcast", buf, buf, count)) return bad;
    if (root < 0 || root >= size()) {
      return Invalid(absl::StrCat("Broadcast: root ", root, " is not a rank of a communicator of ",
                                  size()));
    }
    const int64_t bytes = count * kernels::DTypeSize(dtype);
    const bool small = bytes < state_->options.small_bytes;
    auto op = NewCollective(&DescribeBroadcast, count, dtype, root);
    char* data = static_cast<char*>(buf);
    op->task = small ? ucx::TreeBroadcast(*op, data, bytes, root)
                     : ucx::ChainBroadcast(*op, data, bytes, root);
    return Submit(std::move(op), bytes);
  }

  std::unique_ptr<Work> AllToAll(const void* send, void* recv, int64_t count,
                                 DType dtype) override {
    if (auto bad = CheckBuffers("AllToAll", send, recv, count)) return bad;
    auto op = NewCollective(&DescribeAllToAll, count, dtype);
    op->task = ucx::PairwiseAllToAll(*op, static_cast<const char*>(send),
                                     static_cast<char*>(recv), count * kernels::DTypeSize(dtype));
    return Submit(std::move(op), size() * count * kernels::DTypeSize(dtype));
  }

  std::unique_ptr<Work> Send(const void* buf, int64_t bytes, int peer, int tag) override {
    if (auto bad = CheckPointToPoint("Send", buf, bytes, peer, tag)) return bad;
    auto op = NewPointToPoint(&DescribeSend, bytes, peer, tag);
    op->task = ucx::PointToPointSend(*op, static_cast<const char*>(buf), bytes, peer,
                                     static_cast<uint32_t>(tag));
    return Submit(std::move(op), bytes);
  }

  std::unique_ptr<Work> Recv(void* buf, int64_t bytes, int peer, int tag) override {
    if (auto bad = CheckPointToPoint("Recv", buf, bytes, peer, tag)) return bad;
    auto op = NewPointToPoint(&DescribeRecv, bytes, peer, tag);
    op->task = ucx::PointToPointRecv(*op, static_cast<char*>(buf), bytes, peer,
                                     static_cast<uint32_t>(tag));
    return Submit(std::move(op), bytes);
  }

  std::unique_ptr<Work> Barrier() override {
    auto op = NewCollective(&DescribeBarrier, 0, DType::kF32);
    op->task = ucx::DisseminationBarrier(*op);
    return Submit(std::move(op));
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::vector<int>& ranks) override {
    bool member = false;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] < 0 || ranks[i] >= size() || (i > 0 && ranks[i] <= ranks[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Split: ranks must be ascending, distinct and in [0, ", size(), "); got [",
            absl::StrJoin(ranks, ", "), "]"));
      }
      member |= ranks[i] == rank();
    }
    if (!member) {
      return absl::InvalidArgumentError(absl::StrCat("Split: rank ", rank(),
                                                     " called Split but is not in [",
                                                     absl::StrJoin(ranks, ", "), "]"));
    }
    // Agree on an id above every id any member uses: each proposes its next free id.
    const uint64_t hash = HashRanks(ranks);
    const uint32_t count = state_->split_counts[ranks]++;
    const uint32_t payload = static_cast<uint32_t>(((hash >> 32) % 0xffff) << 10) | (count & 0x3ff);
    const uint64_t proposal = engine_->ProposeCommId();
    const uint64_t value = (proposal << 32) | (hash & 0xffffffffu);
    std::vector<uint64_t> values;
    auto op = std::make_shared<Op>(
        state_, OpKind::kControl,
        absl::StrCat("Split([", absl::StrJoin(ranks, ", "), "])"));
    op->watched = ranks;
    op->task = ucx::ExchangeValues(*op, ranks, payload,
                                   std::vector<uint64_t>(ranks.size(), value), &values);
    engine_->Submit(op);
    RETURN_IF_ERROR(engine_->Wait(*op));
    uint64_t id = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      if ((values[i] & 0xffffffffu) != (hash & 0xffffffffu)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Split([", absl::StrJoin(ranks, ", "), "]): rank ", ranks[i],
            " called Split with a different rank list"));
      }
      id = std::max(id, values[i] >> 32);
    }
    if (id > ucx::kMaxCommId) {
      return absl::ResourceExhaustedError("Split: communicator ids exhausted");
    }
    engine_->CommitCommId(static_cast<uint32_t>(id));
    std::vector<int> globals;
    int new_rank = 0;
    for (size_t i = 0; i < ranks.size(); ++i) {
      globals.push_back(state_->global_ranks[ranks[i]]);
      if (ranks[i] == rank()) new_rank = static_cast<int>(i);
    }
    auto child = engine_->NewComm(static_cast<uint32_t>(id), new_rank, std::move(globals),
                                  state_->options);
    return std::unique_ptr<Communicator>(new UcxCommunicator(engine_, std::move(child)));
  }

  void Abort(const absl::Status& status) override {
    engine_->AbortComm(state_.get(),
                       status.ok() ? absl::AbortedError("Abort() with an OK status") : status);
  }

  // Connects the world: a handshake between every pair over the control endpoints, a
  // probe of direct copies in both directions, the data endpoints, and a handshake over
  // those, so every endpoint is connected (and the control ones watched for failures)
  // before the first collective.
  absl::Status Wireup() {
    std::vector<int> all(size());
    for (int r = 0; r < size(); ++r) all[r] = r;
    auto exchange = [&](const char* name, bool control, uint32_t payload,
                        std::vector<uint64_t> out) -> absl::StatusOr<std::vector<uint64_t>> {
      std::vector<uint64_t> in;
      auto op = std::make_shared<Op>(state_, OpKind::kControl, name);
      op->control_lane = control;
      op->task = ucx::ExchangeValues(*op, all, payload, std::move(out), &in);
      engine_->Submit(op);
      RETURN_IF_ERROR(engine_->Wait(*op));
      return in;
    };
    const std::vector<uint64_t> zeros(size(), 0);
    RETURN_IF_ERROR(exchange("wire-up (control endpoints)", true, ucx::kWireupPayload, zeros)
                        .status());
    const std::vector<uint64_t> i_read_them = engine_->ProbeDirectReads();
    ASSIGN_OR_RETURN(std::vector<uint64_t> they_read_me,
                     exchange("direct-copy probe", true, ucx::kWireupPayload - 1, i_read_them));
    RETURN_IF_ERROR(engine_->CreateDataEndpoints(i_read_them, they_read_me));
    return exchange("wire-up (data endpoints)", false, ucx::kWireupPayload - 2, zeros).status();
  }

 private:
  // Ops of at least this many bytes wake a napping progress thread at Submit (so that an
  // op not waited on at once starts now, not within the thread's 1 ms nap). Below it the
  // wake is not worth its cost when the issuer waits at once, as it usually does: the
  // futex call and, when the progress thread shares the issuer's core (ranks pinned to a
  // core), the thread switches cost 5 µs at 64-256 KiB and 15 µs at 1 MiB per op
  // (2-rank all-gather: 9.6 → 4.9 µs at 64 KiB, 75 → 60 µs at 1 MiB without it); at
  // 4 MiB (≥ 400 µs an op) it is lost in the noise.
  static constexpr int64_t kUrgentBytes = 4 << 20;
  // The flat schedules (algorithms.h) instead of the ring: 3 to kMaxFlatRanks ranks, all
  // on this machine, messages of `peer_bytes` up to chunk_bytes.
  static constexpr int kMaxFlatRanks = 8;
  // All-reduce takes the flat schedule only for segments (count/n elements) below this:
  // 4 ranks on 2 cores, 64 KiB went from 72-81 to 62-65 µs, but from 256 KiB up the ring
  // was as fast or faster (1 MiB: 558-563 µs ring, 617-631 flat), while the flat
  // reduce-scatter and all-gather won at every size up to 4 MiB.
  static constexpr int64_t kFlatAllReduceMaxBytes = 64 << 10;
  bool Flat(int64_t peer_bytes) const {
    return size() >= 3 && size() <= kMaxFlatRanks && peer_bytes <= state_->options.chunk_bytes &&
           engine_->AllLocal(*state_);
  }

  std::shared_ptr<Op> NewCollective(std::string (*describe)(const Op&), int64_t count,
                                    DType dtype, int64_t arg = 0) {
    auto op = std::make_shared<Op>(state_, OpKind::kCollective);
    op->seq = state_->next_seq++;
    op->describe = describe;
    op->args[0] = count;
    op->args[1] = static_cast<int64_t>(dtype);
    op->args[2] = arg;
    return op;
  }

  // Send or Recv of `bytes` with `peer`, which alone can fail it.
  std::shared_ptr<Op> NewPointToPoint(std::string (*describe)(const Op&), int64_t bytes,
                                      int peer, int tag) {
    auto op = std::make_shared<Op>(state_, OpKind::kPointToPoint);
    op->describe = describe;
    op->args[0] = bytes;
    op->args[2] = peer;
    op->args[3] = tag;
    op->watched = {peer};
    return op;
  }

  std::unique_ptr<Work> Submit(std::shared_ptr<Op> op, int64_t bytes = 0) {
    op->urgent = bytes >= kUrgentBytes;
    engine_->Submit(op);
    return std::make_unique<UcxWork>(engine_, std::move(op));
  }

  std::unique_ptr<Work> CheckBuffers(const char* what, const void* send, const void* recv,
                                     int64_t count) {
    if (count < 0) return Invalid(absl::StrCat(what, ": negative count ", count));
    if (count > 0 && (send == nullptr || recv == nullptr)) {
      return Invalid(absl::StrCat(what, ": null buffer for ", count, " elements"));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckReduce(const char* what, const void* send, const void* recv,
                                    int64_t count, DType dtype) {
    if (auto bad = CheckBuffers(what, send, recv, count)) return bad;
    if (!ucx::IsSummable(dtype)) {
      return Invalid(absl::StrCat(what, " sums f32 or bf16 elements, not ",
                                  std::string(kernels::DTypeName(dtype))));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckPointToPoint(const char* what, const void* buf, int64_t bytes,
                                          int peer, int tag) {
    if (auto bad = CheckBuffers(what, buf, buf, bytes)) return bad;
    if (peer < 0 || peer >= size()) {
      return Invalid(absl::StrCat(what, ": peer ", peer, " is not a rank of a communicator of ",
                                  size()));
    }
    if (tag < 0 || tag > ucx::kMaxUserTag) {
      return Invalid(absl::StrCat(what, ": tag ", tag, " is outside [0, ", ucx::kMaxUserTag,
                                  "]"));
    }
    return nullptr;
  }

  std::shared_ptr<Engine> engine_;
  std::shared_ptr<ucx::CommState> state_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateUcxCommunicator(Bootstrap& bootstrap,
                                                                    const CommOptions& options) {
  if (options.timeout.count() <= 0 || options.chunk_bytes <= 0 || options.small_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UCX communicator: options need timeout > 0 and chunk_bytes > 0 (got timeout ",
        options.timeout.count(), " ms, chunk_bytes ", options.chunk_bytes, ", small_bytes ",
        options.small_bytes, ")"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Engine> engine, Engine::Create(bootstrap, options));
  std::vector<int> world(engine->world_size());
  for (int r = 0; r < engine->world_size(); ++r) world[r] = r;
  auto state = engine->NewComm(1, engine->world_rank(), std::move(world), options);
  auto comm = std::make_unique<UcxCommunicator>(engine, std::move(state));
  RETURN_IF_ERROR(comm->Wireup());
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace colossal::parallel
