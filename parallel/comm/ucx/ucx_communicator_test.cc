// UCX communicator on 2, 3 and 4 forked ranks (loopback): every collective against a
// reference computed locally from the same (rank, index) formula — exact for f32 sums of
// small integers, within the bf16 rounding bound otherwise — with odd counts, counts
// below the rank count, tiny chunks (many pipeline stages), ≥ 64 MiB messages, Split
// sub-communicators running concurrently with their parent, Send/Recv by tag, Barrier.
#include "parallel/comm/ucx/ucx_communicator.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/comm/tcp_store.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/reduce.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

using kernels::DType;
using testing::Failures;
using testing::ForkOptions;
using testing::ForkRanks;
using Clock = std::chrono::steady_clock;

// Element i of rank r's input. f32: small integers (sums exact in any order); bf16:
// fractions that need rounding.
float Input(DType dtype, int r, int64_t i) {
  if (dtype == DType::kF32) return static_cast<float>((r * 7 + i * 13) % 17) - 8.0f;
  return ucx::Bf16ToFloat(ucx::FloatToBf16(0.37f * (r + 1) + 0.0113f * static_cast<float>(i % 97)));
}

void Fill(DType dtype, int r, int64_t offset, int64_t count, char* out) {
  for (int64_t i = 0; i < count; ++i) {
    float v = Input(dtype, r, offset + i);
    if (dtype == DType::kF32) {
      std::memcpy(out + 4 * i, &v, 4);
    } else {
      uint16_t b = ucx::FloatToBf16(v);
      std::memcpy(out + 2 * i, &b, 2);
    }
  }
}

float Get(DType dtype, const char* buf, int64_t i) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, buf + 4 * i, 4);
    return v;
  }
  uint16_t b;
  std::memcpy(&b, buf + 2 * i, 2);
  return ucx::Bf16ToFloat(b);
}

// Checks buf[0..count) against Σ_r Input(r, offset + i). f32: exact. bf16: each hop rounds
// once (unit roundoff 2^-8) and an element sees at most n-1 hops (ring) or log2(n)+1
// (recursive doubling), so |error| ≤ n · 2^-8 · Σ_r |x_r|.
absl::Status CheckSum(const std::string& what, DType dtype, int size, int64_t offset,
                      int64_t count, const char* buf) {
  for (int64_t i = 0; i < count; ++i) {
    double want = 0, scale = 0;
    for (int r = 0; r < size; ++r) {
      want += Input(dtype, r, offset + i);
      scale += std::fabs(Input(dtype, r, offset + i));
    }
    const double got = Get(dtype, buf, i);
    const double tol = dtype == DType::kF32 ? 0.0 : size * std::ldexp(1.0, -8) * scale;
    if (std::fabs(got - want) > tol) {
      return absl::InternalError(absl::StrCat(what, ": element ", offset + i, " is ", got,
                                              " but the reference is ", want, " (tolerance ",
                                              tol, ")"));
    }
  }
  return absl::OkStatus();
}

// Every rank's buffer must be bit-identical (replicas stay in sync).
absl::Status CheckIdentical(Communicator& comm, const std::string& what, const char* buf,
                            int64_t bytes) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < bytes; ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ull;
  std::vector<uint64_t> all(comm.size());
  RETURN_IF_ERROR(comm.AllGather(&h, all.data(), 2, DType::kF32)->Wait());
  for (int r = 0; r < comm.size(); ++r) {
    if (all[r] != h) return absl::InternalError(absl::StrCat(what, ": rank ", r, " holds different bits"));
  }
  return absl::OkStatus();
}

absl::Status CheckCollectives(Communicator& comm, const std::string& label, int64_t count,
                              DType dtype) {
  const int n = comm.size(), r = comm.rank();
  const int64_t es = kernels::DTypeSize(dtype);
  const std::string what = absl::StrCat(label, " ", std::string(kernels::DTypeName(dtype)),
                                        " count=", count, " on ", n, " ranks");
  // AllReduce (in place).
  std::vector<char> buf(count * es + 1);
  Fill(dtype, r, 0, count, buf.data());
  RETURN_IF_ERROR(comm.AllReduce(buf.data(), count, dtype)->Wait());
  RETURN_IF_ERROR(CheckSum("AllReduce " + what, dtype, n, 0, count, buf.data()));
  RETURN_IF_ERROR(CheckIdentical(comm, "AllReduce " + what, buf.data(), count * es));
  // ReduceScatter: rank r's input is the (rank, index) pattern over n·count elements.
  std::vector<char> send(n * count * es + 1), recv(count * es + 1);
  Fill(dtype, r, 0, n * count, send.data());
  RETURN_IF_ERROR(comm.ReduceScatter(send.data(), recv.data(), count, dtype)->Wait());
  RETURN_IF_ERROR(CheckSum("ReduceScatter " + what, dtype, n, r * count, count, recv.data()));
  // AllGather.
  std::vector<char> mine(count * es + 1), all(n * count * es + 1);
  Fill(dtype, r, 0, count, mine.data());
  RETURN_IF_ERROR(comm.AllGather(mine.data(), all.data(), count, dtype)->Wait());
  for (int q = 0; q < n; ++q) {
    std::vector<char> want(count * es + 1);
    Fill(dtype, q, 0, count, want.data());
    if (std::memcmp(all.data() + q * count * es, want.data(), count * es) != 0) {
      return absl::InternalError(absl::StrCat("AllGather ", what, ": block of rank ", q, " differs"));
    }
  }
  // Broadcast from a root that depends on the count.
  const int root = static_cast<int>(count % n);
  std::vector<char> b(count * es + 1);
  Fill(dtype, r, 0, count, b.data());
  RETURN_IF_ERROR(comm.Broadcast(b.data(), count, dtype, root)->Wait());
  std::vector<char> want_b(count * es + 1);
  Fill(dtype, root, 0, count, want_b.data());
  if (std::memcmp(b.data(), want_b.data(), count * es) != 0) {
    return absl::InternalError(absl::StrCat("Broadcast ", what, " root ", root, ": differs"));
  }
  // AllToAll: block q of rank r's send is Fill(r, q·count ...).
  std::vector<char> a_send(n * count * es + 1), a_recv(n * count * es + 1);
  Fill(dtype, r, 0, n * count, a_send.data());
  RETURN_IF_ERROR(comm.AllToAll(a_send.data(), a_recv.data(), count, dtype)->Wait());
  for (int q = 0; q < n; ++q) {
    std::vector<char> want(count * es + 1);
    Fill(dtype, q, r * count, count, want.data());
    if (std::memcmp(a_recv.data() + q * count * es, want.data(), count * es) != 0) {
      return absl::InternalError(absl::StrCat("AllToAll ", what, ": block from rank ", q, " differs"));
    }
  }
  return absl::OkStatus();
}

CommOptions Options() {
  CommOptions options;
  options.timeout = std::chrono::milliseconds(20000);
  return options;
}

// Tiny chunks and no small-message path: every count goes through the pipelined ring.
CommOptions RingOptions() {
  CommOptions options = Options();
  options.chunk_bytes = 256;
  options.small_bytes = 0;
  return options;
}

TEST_CASE("UCX collectives equal the reference on 2, 3 and 4 ranks") {
  for (int size : {2, 3, 4}) {
    auto exits = ForkRanks(size, [](int rank, int size, TcpStore& store) -> absl::Status {
      auto comm = CreateUcxCommunicator(store, Options());
      if (!comm.ok()) return comm.status();
      auto ring = CreateUcxCommunicator(store, RingOptions());
      if (!ring.ok()) return ring.status();
      if ((*comm)->rank() != rank || (*comm)->size() != size) {
        return absl::InternalError("rank or size differs from the bootstrap");
      }
      // 40000: the flat schedules on 3 and 4 ranks with direct copies (all-reduce
      // segments of 40-53 KB, reduce-scatter and all-gather messages of 160 KB).
      for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{size - 1},
                            int64_t{0}, int64_t{40000}, int64_t{1000003}}) {
        for (DType dtype : {DType::kF32, DType::kBF16}) {
          RETURN_IF_ERROR(CheckCollectives(**comm, "default", count, dtype));
          if (count <= 1000) RETURN_IF_ERROR(CheckCollectives(**ring, "ring", count, dtype));
        }
      }
      RETURN_IF_ERROR(CheckCollectives(**ring, "ring", 100003, DType::kF32));
      return absl::OkStatus();
    });
    INFO("size " << size);
    CHECK(Failures(exits) == "");
  }
}

TEST_CASE("UCX collectives over TCP only (UCX_TLS=tcp,self), as between machines") {
  auto exits = ForkRanks(3, [](int rank, int size, TcpStore& store) -> absl::Status {
    setenv("UCX_TLS", "tcp,self", 1);  // read by UCX itself when the communicator starts
    auto comm = CreateUcxCommunicator(store, Options());
    if (!comm.ok()) return comm.status();
    for (int64_t count : {int64_t{7}, int64_t{100003}}) {
      RETURN_IF_ERROR(CheckCollectives(**comm, "tcp", count, DType::kF32));
    }
    return absl::OkStatus();
  });
  CHECK(Failures(exits) == "");
}

TEST_CASE("UCX all-reduce, reduce-scatter and all-gather of 64 MiB through the chunked ring") {
  auto exits = ForkRanks(4, [](int rank, int size, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, Options());
    if (!comm.ok()) return comm.status();
    const int64_t count = int64_t{16} << 20;  // 64 MiB of f32 per rank
    std::vector<char> buf(count * 4);
    Fill(DType::kF32, rank, 0, count, buf.data());
    RETURN_IF_ERROR((*comm)->AllReduce(buf.data(), count, DType::kF32)->Wait());
    RETURN_IF_ERROR(CheckSum("AllReduce 64 MiB", DType::kF32, size, 0, count, buf.data()));
    // Reduce-scatter of 64 MiB (16 MiB per rank) and all-gather back to 64 MiB.
    std::vector<char> part(count / size * 4);
    Fill(DType::kF32, rank, 0, count, buf.data());
    RETURN_IF_ERROR((*comm)->ReduceScatter(buf.data(), part.data(), count / size, DType::kF32)->Wait());
    RETURN_IF_ERROR(CheckSum("ReduceScatter 64 MiB", DType::kF32, size, rank * (count / size),
                               count / size, part.data()));
    RETURN_IF_ERROR((*comm)->AllGather(part.data(), buf.data(), count / size, DType::kF32)->Wait());
    RETURN_IF_ERROR(CheckSum("AllGather after ReduceScatter 64 MiB", DType::kF32, size, 0, count,
                               buf.data()));
    // bf16 all-reduce of 64 MiB.
    const int64_t half = count * 2;
    std::vector<char> h(half * 2);
    Fill(DType::kBF16, rank, 0, half, h.data());
    RETURN_IF_ERROR((*comm)->AllReduce(h.data(), half, DType::kBF16)->Wait());
    RETURN_IF_ERROR(CheckSum("AllReduce bf16 64 MiB", DType::kBF16, size, 0, half, h.data()));
    return CheckIdentical(**comm, "AllReduce bf16 64 MiB", h.data(), half * 2);
  },
  // 4 processes moving 64 MiB each on what may be 2 busy cores: more than the default
  // 45 s hang guard once the machine is loaded (seen at load 9-12); ops keep their 20 s bound.
  ForkOptions{.deadline = std::chrono::seconds(120)});
  CHECK(Failures(exits) == "");
}

TEST_CASE("UCX counts the bytes each rank sends: the ring algorithms' 2(P-1)/P and (P-1)/P") {
  auto exits = ForkRanks(4, [](int rank, int size, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, Options());
    if (!comm.ok()) return comm.status();
    Communicator& c = **comm;
    const int64_t count = int64_t{1} << 18;  // 1 MiB of f32: above small_bytes, the ring
    std::vector<float> buf(count, 1.0f), part(count / size);
    auto expect = [&](const char* what, int64_t before, int64_t bytes) -> absl::Status {
      if (c.bytes_sent() - before == bytes) return absl::OkStatus();
      return absl::InternalError(absl::StrCat(what, ": rank ", rank, " sent ",
                                              c.bytes_sent() - before, " bytes, expected ", bytes));
    };
    int64_t before = c.bytes_sent();
    RETURN_IF_ERROR(c.AllReduce(buf.data(), count, DType::kF32)->Wait());
    RETURN_IF_ERROR(expect("AllReduce", before, 2 * (size - 1) * count * 4 / size));
    before = c.bytes_sent();
    RETURN_IF_ERROR(c.ReduceScatter(buf.data(), part.data(), count / size, DType::kF32)->Wait());
    RETURN_IF_ERROR(expect("ReduceScatter", before, (size - 1) * (count / size) * 4));
    before = c.bytes_sent();
    RETURN_IF_ERROR(c.AllGather(part.data(), buf.data(), count / size, DType::kF32)->Wait());
    RETURN_IF_ERROR(expect("AllGather", before, (size - 1) * (count / size) * 4));
    before = c.bytes_sent();
    RETURN_IF_ERROR(c.Barrier()->Wait());
    RETURN_IF_ERROR(expect("Barrier", before, 0));
    // The analytic figure the in-process and NCCL backends count is the same.
    if (SentByRing(Collective::kAllReduce, count * 4, size) != 2 * (size - 1) * count * 4 / size) {
      return absl::InternalError("SentByRing(kAllReduce) disagrees with the ring");
    }
    return absl::OkStatus();
  });
  CHECK(Failures(exits) == "");
}

TEST_CASE("UCX Split: sub-groups run collectives concurrently with the parent") {
  auto exits = ForkRanks(4, [](int rank, int size, TcpStore& store) -> absl::Status {
    auto world = CreateUcxCommunicator(store, Options());
    if (!world.ok()) return world.status();
    // {0,2} and {1,3}; then {0,1,2,3} in reverse order of creation on odd ranks.
    std::vector<int> mine = rank % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3};
    auto pair = (*world)->Split(mine);
    if (!pair.ok()) return pair.status();
    auto all = (*world)->Split({0, 1, 2, 3});
    if (!all.ok()) return all.status();
    auto solo = (*world)->Split({rank});
    if (!solo.ok()) return solo.status();
    if ((*pair)->size() != 2 || (*pair)->rank() != rank / 2 ||
        (*pair)->global_ranks() != mine) {
      return absl::InternalError("pair communicator has wrong rank, size or members");
    }
    // Nested: a split of the pair (itself).
    auto nested = (*pair)->Split({0, 1});
    if (!nested.ok()) return nested.status();
    if ((*nested)->global_ranks() != mine) return absl::InternalError("nested members differ");
    for (int round = 0; round < 5; ++round) {
      const int64_t count = 300001 + round;
      std::vector<float> w(count), p(count), a(count), nn(count), s(count);
      for (int64_t i = 0; i < count; ++i) {
        w[i] = static_cast<float>((rank + i) % 5);
        p[i] = static_cast<float>((rank * 3 + i) % 7);
        a[i] = static_cast<float>(rank + 1);
        nn[i] = 1.0f;
        s[i] = 2.0f;
      }
      // Issue on four communicators, then wait: they progress concurrently.
      auto ww = (*world)->AllReduce(w.data(), count, DType::kF32);
      auto pw = (*pair)->AllReduce(p.data(), count, DType::kF32);
      auto aw = (*all)->AllReduce(a.data(), count, DType::kF32);
      auto nw = (*nested)->AllReduce(nn.data(), count, DType::kF32);
      auto sw = (*solo)->AllReduce(s.data(), count, DType::kF32);
      RETURN_IF_ERROR(pw->Wait());
      RETURN_IF_ERROR(nw->Wait());
      RETURN_IF_ERROR(sw->Wait());
      RETURN_IF_ERROR(aw->Wait());
      RETURN_IF_ERROR(ww->Wait());
      for (int64_t i = 0; i < count; ++i) {
        float want_w = 0, want_p = 0;
        for (int q = 0; q < size; ++q) want_w += static_cast<float>((q + i) % 5);
        for (int q : mine) want_p += static_cast<float>((q * 3 + i) % 7);
        if (w[i] != want_w || p[i] != want_p || a[i] != 10.0f || nn[i] != 2.0f || s[i] != 2.0f) {
          return absl::InternalError(absl::StrCat("round ", round, " element ", i, ": world ", w[i],
                                                  " (want ", want_w, "), pair ", p[i], " (want ",
                                                  want_p, "), all ", a[i], ", nested ", nn[i],
                                                  ", solo ", s[i]));
        }
      }
    }
    return CheckCollectives(**pair, "pair", 1001, DType::kBF16);
  });
  CHECK(Failures(exits) == "");
}

TEST_CASE("UCX Send/Recv match by tag and peer; both directions at once do not deadlock") {
  auto exits = ForkRanks(3, [](int rank, int size, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, Options());
    if (!comm.ok()) return comm.status();
    Communicator& c = **comm;
    const int64_t big = 3 << 20;
    if (rank == 0) {
      std::vector<int32_t> five(100, 5), nine(big / 4, 9);
      auto a = c.Send(five.data(), 400, 1, 5);
      auto b = c.Send(nine.data(), big, 1, 9);
      RETURN_IF_ERROR(a->Wait());
      RETURN_IF_ERROR(b->Wait());
    } else if (rank == 1) {
      std::vector<int32_t> five(100, 0), nine(big / 4, 0);
      // Posted in the other order: matching is by tag.
      auto b = c.Recv(nine.data(), big, 0, 9);
      auto a = c.Recv(five.data(), 400, 0, 5);
      RETURN_IF_ERROR(b->Wait());
      RETURN_IF_ERROR(a->Wait());
      if (five[99] != 5 || nine[0] != 9 || nine.back() != 9) {
        return absl::InternalError("Recv got the wrong message");
      }
    }
    // Every pair exchanges 1 MiB both ways, Send issued before Recv on both sides.
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      std::vector<int32_t> out(1 << 18, rank * 100 + peer), in(1 << 18, -1);
      auto s = c.Send(out.data(), out.size() * 4, peer, 77);
      auto r = c.Recv(in.data(), in.size() * 4, peer, 77);
      RETURN_IF_ERROR(s->Wait());
      RETURN_IF_ERROR(r->Wait());
      if (in.front() != peer * 100 + rank || in.back() != peer * 100 + rank) {
        return absl::InternalError(absl::StrCat("exchange with ", peer, " got ", in.front()));
      }
    }
    // Invalid arguments fail at once, without touching the peers.
    if (c.Send(nullptr, 4, 0, 1)->Wait().code() != absl::StatusCode::kInvalidArgument ||
        c.Recv(&rank, 4, size, 1)->Wait().code() != absl::StatusCode::kInvalidArgument ||
        c.Send(&rank, 4, 0, -1)->Wait().code() != absl::StatusCode::kInvalidArgument ||
        c.AllReduce(&rank, 1, DType::kI32)->Wait().code() != absl::StatusCode::kInvalidArgument) {
      return absl::InternalError("an invalid argument was accepted");
    }
    return c.Barrier()->Wait();
  });
  CHECK(Failures(exits) == "");
}

TEST_CASE("UCX Barrier releases no rank before the last one arrives") {
  auto exits = ForkRanks(4, [](int rank, int size, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, Options());
    if (!comm.ok()) return comm.status();
    for (int round = 0; round < 3; ++round) {
      RETURN_IF_ERROR((*comm)->Barrier()->Wait());
      const auto start = Clock::now();
      // The late rank changes each round.
      const int late = (round + 1) % size;
      if (rank == late) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      RETURN_IF_ERROR((*comm)->Barrier()->Wait());
      const auto waited = Clock::now() - start;
      if (waited < std::chrono::milliseconds(280)) {
        return absl::InternalError(absl::StrCat("round ", round, ": left the barrier after ",
                                                std::chrono::duration_cast<std::chrono::milliseconds>(waited).count(),
                                                " ms, before rank ", late, " arrived"));
      }
    }
    return absl::OkStatus();
  });
  CHECK(Failures(exits) == "");
}

}  // namespace
}  // namespace colossal::parallel
