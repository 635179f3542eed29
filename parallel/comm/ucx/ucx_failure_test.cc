// Failure paths of the UCX communicator on forked ranks: a rank killed mid-collective, a
// silent rank, Abort, a size mismatch and a destroyed communicator all end every Wait()
// within the timeout with an error naming the peer, never a hang.
#include <signal.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/comm/tcp_store.h"
#include "parallel/comm/testing/fork_ranks.h"
#include "parallel/comm/ucx/ucx_communicator.h"

namespace colossal::parallel {
namespace {

using kernels::DType;
using testing::ForkRanks;
using testing::RankExit;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(3000);

CommOptions ShortTimeout() {
  CommOptions options;
  options.timeout = kTimeout;
  return options;
}

int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

// A survivor's check of a failed Wait(): an error, in time, naming `peer`.
absl::Status ExpectFailure(const absl::Status& status, int64_t elapsed_ms, int peer,
                           int64_t bound_ms) {
  if (status.ok()) return absl::InternalError("Wait() succeeded although a peer was gone");
  const std::string name = absl::StrCat("rank ", peer, " (global rank ", peer, ")");
  if (!Contains(status, name)) {
    return absl::InternalError(absl::StrCat("the error does not name ", name, ": ",
                                            status.ToString()));
  }
  if (elapsed_ms > bound_ms) {
    return absl::InternalError(absl::StrCat("Wait() took ", elapsed_ms, " ms (bound ", bound_ms,
                                            "): ", status.ToString()));
  }
  return absl::OkStatus();
}

void CheckSurvivors(const std::vector<RankExit>& exits, int victim) {
  for (const RankExit& e : exits) {
    INFO(e.Describe());
    if (e.rank == victim) {
      CHECK(e.signal == SIGKILL);
      CHECK_FALSE(e.killed_at_deadline);
    } else {
      CHECK(e.ok());
    }
  }
}

TEST_CASE("A rank killed mid-all-reduce fails the others' Wait() within the timeout, naming it") {
  for (int size : {3, 4}) {
    const int victim = 1;
    auto exits = ForkRanks(size, [victim](int rank, int, TcpStore& store) -> absl::Status {
      auto comm = CreateUcxCommunicator(store, ShortTimeout());
      if (!comm.ok()) return comm.status();
      std::vector<float> buf(16 << 20, 1.0f);  // 64 MiB: long enough to be killed inside
      absl::Status warm = (*comm)->AllReduce(buf.data(), 1024, DType::kF32)->Wait();
      if (!warm.ok()) return warm;
      const auto start = Clock::now();
      auto work = (*comm)->AllReduce(buf.data(), static_cast<int64_t>(buf.size()), DType::kF32);
      if (rank == victim) {
        std::this_thread::sleep_for(milliseconds(5));
        raise(SIGKILL);
      }
      absl::Status status = work->Wait();
      absl::Status check = ExpectFailure(status, MillisSince(start), victim, kTimeout.count());
      if (!check.ok()) return check;
      // Stay alive until every survivor has seen the failure: a survivor that exits early
      // is a second dead peer, and the others might name it first.
      std::this_thread::sleep_for(milliseconds(1500));
      // Later operations fail at once with the same cause.
      const auto later = Clock::now();
      absl::Status after = (*comm)->Barrier()->Wait();
      if (after.ok() || !Contains(after, "failed earlier") || MillisSince(later) > 500) {
        return absl::InternalError("an op after the failure: " + after.ToString());
      }
      return absl::OkStatus();
    });
    INFO("size " << size);
    CheckSurvivors(exits, victim);
  }
}

TEST_CASE("Over TCP only (UCX_TLS=tcp,self), a rank killed mid-all-reduce is an error, not an abort") {
  const int victim = 2;
  auto exits = ForkRanks(3, [victim](int rank, int, TcpStore& store) -> absl::Status {
    setenv("UCX_TLS", "tcp,self", 1);  // read by UCX itself when the communicator starts
    auto comm = CreateUcxCommunicator(store, ShortTimeout());
    if (!comm.ok()) return comm.status();
    std::vector<float> buf(4 << 20, 1.0f);
    absl::Status warm = (*comm)->AllReduce(buf.data(), 1024, DType::kF32)->Wait();
    if (!warm.ok() || buf[0] != 3.0f) return absl::InternalError("warm-up: " + warm.ToString());
    const auto start = Clock::now();
    auto work = (*comm)->AllReduce(buf.data(), static_cast<int64_t>(buf.size()), DType::kF32);
    if (rank == victim) {
      std::this_thread::sleep_for(milliseconds(3));
      raise(SIGKILL);
    }
    absl::Status check = ExpectFailure(work->Wait(), MillisSince(start), victim, kTimeout.count());
    if (!check.ok()) return check;
    std::this_thread::sleep_for(milliseconds(1500));
    return absl::OkStatus();
  });
  CheckSurvivors(exits, victim);
}

TEST_CASE("A rank killed between collectives fails the next one; sub-communicators without it go on") {
  auto exits = ForkRanks(4, [](int rank, int, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, ShortTimeout());
    if (!comm.ok()) return comm.status();
    auto pair = (*comm)->Split(rank % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3});
    if (!pair.ok()) return pair.status();
    if (rank == 3) raise(SIGKILL);
    float x = 1.0f;
    const auto start = Clock::now();
    absl::Status status = (*comm)->AllReduce(&x, 1, DType::kF32)->Wait();
    absl::Status check = ExpectFailure(status, MillisSince(start), 3, kTimeout.count());
    if (!check.ok()) return check;
    if (rank == 1) {
      // Its pair partner is the dead rank (pair rank 1, global rank 3).
      absl::Status p = (*pair)->Barrier()->Wait();
      if (p.ok() || !Contains(p, "rank 1 (global rank 3) failed")) {
        return absl::InternalError("pair op with the dead rank: " + p.ToString());
      }
      std::this_thread::sleep_for(milliseconds(1500));
      return absl::OkStatus();
    }
    // Ranks 0 and 2: their pair does not contain rank 3 and still works.
    std::vector<float> v(1000, static_cast<float>(rank));
    absl::Status p = (*pair)->AllReduce(v.data(), 1000, DType::kF32)->Wait();
    if (!p.ok()) return p;
    if (v[999] != 2.0f) return absl::InternalError(absl::StrCat("pair sum ", v[999]));
    std::this_thread::sleep_for(milliseconds(1500));
    return absl::OkStatus();
  });
  CheckSurvivors(exits, 3);
}

TEST_CASE("A silent rank fails the collective with DEADLINE_EXCEEDED naming it") {
  auto exits = ForkRanks(2, [](int rank, int, TcpStore& store) -> absl::Status {
    CommOptions options;
    options.timeout = milliseconds(1500);
    auto comm = CreateUcxCommunicator(store, options);
    if (!comm.ok()) return comm.status();
    if (rank == 1) {
      // Alive but never joins the all-reduce; outlives rank 0's timeout.
      std::this_thread::sleep_for(milliseconds(2500));
      return absl::OkStatus();
    }
    std::vector<float> buf(1 << 20, 1.0f);
    const auto start = Clock::now();
    absl::Status status = (*comm)->AllReduce(buf.data(), 1 << 20, DType::kF32)->Wait();
    const int64_t elapsed = MillisSince(start);
    if (status.code() != absl::StatusCode::kDeadlineExceeded) {
      return absl::InternalError("expected DEADLINE_EXCEEDED, got " + status.ToString());
    }
    if (elapsed < 1400) return absl::InternalError(absl::StrCat("gave up after ", elapsed, " ms"));
    // Timeout, plus the grace to cancel requests and force-close the endpoint.
    return ExpectFailure(status, elapsed, 1, 1500 + 1000);
  });
  for (const RankExit& e : exits) {
    INFO(e.Describe());
    CHECK(e.ok());
  }
}

TEST_CASE("Abort fails the pending op with its status; a wrong size and a destroyed communicator are errors") {
  auto exits = ForkRanks(2, [](int rank, int, TcpStore& store) -> absl::Status {
    auto comm = CreateUcxCommunicator(store, ShortTimeout());
    if (!comm.ok()) return comm.status();
    auto spare = CreateUcxCommunicator(store, ShortTimeout());
    if (!spare.ok()) return spare.status();
    auto other = CreateUcxCommunicator(store, ShortTimeout());
    if (!other.ok()) return other.status();
    // 1. Rank 1 receives 8 bytes where rank 0 sends 4.
    int64_t word = 7;
    absl::Status size_status = rank == 0 ? (*comm)->Send(&word, 4, 1, 3)->Wait()
                                         : (*comm)->Recv(&word, 8, 0, 3)->Wait();
    if (rank == 1 && (size_status.ok() || !Contains(size_status, "is not the 8 bytes expected"))) {
      return absl::InternalError("size mismatch: " + size_status.ToString());
    }
    // 2. Abort from another thread while rank 0 waits for a peer that never joins.
    if (rank == 0) {
      float x = 1;
      auto work = (*spare)->AllReduce(&x, 1, DType::kF32);
      std::thread aborter([&] {
        std::this_thread::sleep_for(milliseconds(200));
        (*spare)->Abort(absl::AbortedError("stopped by the test"));
      });
      const auto start = Clock::now();
      absl::Status status = work->Wait();
      aborter.join();
      if (status.code() != absl::StatusCode::kAborted || !Contains(status, "stopped by the test") ||
          MillisSince(start) > 1500) {
        return absl::InternalError("Abort: " + status.ToString());
      }
      // 3. Destroying a communicator cancels its pending op; the Work outlives it.
      auto pending = (*other)->AllReduce(&x, 1, DType::kF32);
      other->reset();
      absl::Status cancelled = pending->Wait();
      if (cancelled.code() != absl::StatusCode::kCancelled) {
        return absl::InternalError("destroyed: " + cancelled.ToString());
      }
    }
    // Both ranks meet once more on a healthy communicator before leaving.
    auto fresh = CreateUcxCommunicator(store, ShortTimeout());
    if (!fresh.ok()) return fresh.status();
    return (*fresh)->Barrier()->Wait();
  });
  for (const RankExit& e : exits) {
    INFO(e.Describe());
    CHECK(e.ok());
  }
}

}  // namespace
}  // namespace colossal::parallel
