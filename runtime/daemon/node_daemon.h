// The node daemon (`colossald --join`, and the one `colossal run` embeds): registers this
// machine with the coordinator, heartbeats (running workers, unacknowledged exits, new log
// bytes), starts the workers it is assigned and stops the attempts it is told to.
// It never exits because of a job or the coordinator: while the coordinator is
// unreachable, workers keep running, exits stay queued and retries back off (<= ~2 s);
// everything is reported when it is back, and `reregister` (or NOT_FOUND) re-registers
// with the running workers so a restarted coordinator re-attaches.
//
// Threads: one loop thread owns the workers (spawns, reaps, signals them) and the RPCs.
// Workers die with that thread (PR_SET_PDEATHSIG), i.e. with the daemon. Public methods
// are thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/daemon/devices.h"
#include "runtime/rpc/rpc.h"

namespace colossal::daemon {

struct DaemonOptions {
  std::string coordinator;                  // HOST:PORT
  rpc::SecurityOptions security;            // token file / TLS for talking to the coordinator
  int slots = 1;                            // ranks this node runs at once (CPU slots)
  std::string node_id;                      // empty: "<hostname>-<pid>" (stable for the daemon's life)
  std::string address = "127.0.0.1";        // advertised to other nodes (MASTER_ADDR of its rank 0)
  std::string state_dir;                    // per-worker spec files and logs; created if absent
                                            // (empty: /tmp/colossald-<node_id>)
  std::vector<std::string> worker_command;  // argv prefix of a worker; empty: "colossal-worker"
                                            // in the directory of /proc/self/exe
  int64_t heartbeat_ms = 500;               // until the coordinator says otherwise
  int64_t rpc_timeout_ms = 3000;            // deadline of every RPC
};

// Most log bytes one heartbeat carries.
inline constexpr size_t kLogBytesPerHeartbeat = 1 << 20;
// Longest wait between two tries to reach an unreachable coordinator.
inline constexpr int64_t kMaxRetryMs = 1000;

class NodeDaemon {
 public:
  // Validates the options, creates the state directory, reads the token file and starts
  // the loop thread. Does not wait for the coordinator (it may be down).
  static absl::StatusOr<std::unique_ptr<NodeDaemon>> Start(const DaemonOptions& options);

  NodeDaemon(const NodeDaemon&) = delete;
  NodeDaemon& operator=(const NodeDaemon&) = delete;
  ~NodeDaemon();  // Stop(true)

  const std::string& node_id() const;
  const std::string& state_dir() const;

  // Stops the heartbeat loop (cancelling an RPC in flight) and returns once it has
  // stopped. With kill_workers, also SIGTERMs every worker's process group, SIGKILLs
  // after grace_ms and reaps them before returning. Without, workers keep running until
  // a later Stop(true) or the destructor. Idempotent; safe from any thread.
  void Stop(bool kill_workers, int64_t grace_ms = 5000);
  // Blocks until Stop has stopped the loop.
  void Wait();

 private:
  struct Impl;
  explicit NodeDaemon(std::unique_ptr<Impl> impl);
  void Run();

  std::unique_ptr<Impl> impl_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;  // guarded by mu_
  bool kill_requested_ = false;  // guarded by mu_
  int64_t kill_grace_ms_ = 0;    // guarded by mu_
  bool loop_stopped_ = false;    // guarded by mu_: no more RPCs
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace colossal::daemon
