// ForkRanks: runs a multi-rank test body in `size` forked child processes on loopback,
// each with its own TcpStore (rank 0 listens on 127.0.0.1 at a port the kernel picks and
// hands it to the others through pipes). Owns the children: every child still alive at
// the deadline is killed by its pid (SIGKILL) and reaped, so a test never leaves a
// process behind. Does not own what the body checks.
//
// Fork before anything in the test process starts threads or UCX (Catch2's process is
// single-threaded); the body runs in a fresh child and must not return to Catch2 (the
// child leaves with _exit). The body's error, if any, comes back as text.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallel/comm/tcp_store.h"

namespace colossal::parallel::testing {

struct RankExit {
  int rank = 0;
  pid_t pid = 0;
  bool exited = false;    // exited normally (see code)
  int code = -1;
  int signal = 0;         // killed by this signal (SIGKILL when the harness killed it)
  bool killed_at_deadline = false;
  std::string error;      // the body's status message, when not OK
  bool ok() const { return exited && code == 0; }
  std::string Describe() const;
};

struct ForkOptions {
  std::chrono::milliseconds deadline{45000};       // whole run, after which children die
  std::chrono::milliseconds store_timeout{15000};  // TcpStore connect / AllGather bound
};

using RankBody = std::function<absl::Status(int rank, int size, TcpStore& store)>;

std::vector<RankExit> ForkRanks(int size, const RankBody& body, const ForkOptions& options = {});

// "rank 1: exited 1: <error>" lines of every rank that did not exit 0 (empty when all OK).
std::string Failures(const std::vector<RankExit>& exits);

}  // namespace colossal::parallel::testing
