// TcpStore: a Bootstrap (communicator.h) over plain TCP, for jobs that only have the
// torchrun/Slurm environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). Rank 0
// listens on MASTER_ADDR:MASTER_PORT; every other rank connects to it (retrying until
// the timeout) and keeps the connection for later rounds. Owns the sockets; does not own
// what the blobs mean (the UCX backend exchanges worker addresses through it).
//
// Wire format (all integers little-endian):
//   hello  (rank r → 0):  u32 magic 'CLTS', u32 rank, u32 world_size
//   round  (rank r → 0):  u64 length, bytes                     (r's blob)
//          (0 → rank r):  size × (u64 length, bytes)            (every blob, by rank)
// Rank 0 accepts connections lazily, in its first AllGather, so a test can create it on
// port 0 and read port() before starting the other ranks.
//
// Deadlines: construction (connect) and every AllGather are bounded by `timeout`; every
// wait is a poll() with the time left. Errors name the address and the ranks missing.
// Thread safety: one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"

namespace colossal::parallel {

struct TcpStoreOptions {
  std::string addr;  // host name or numeric address of rank 0
  int port = 0;      // rank 0 may pass 0 (any free port; read it back with port())
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{60000};  // bound of connecting and of each AllGather
};

class TcpStore : public Bootstrap {
 public:
  // Rank 0 binds and listens; other ranks connect (retrying until the timeout).
  static absl::StatusOr<std::unique_ptr<TcpStore>> Create(const TcpStoreOptions& options);

  // From MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE (read through base::GetEnv); an
  // unset or malformed variable is an INVALID_ARGUMENT naming it.
  static absl::StatusOr<std::unique_ptr<TcpStore>> FromEnv(std::chrono::milliseconds timeout);

  ~TcpStore() override;
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  // The port rank 0 listens on (the chosen one when options.port was 0).
  int port() const { return port_; }

  absl::StatusOr<std::vector<std::string>> AllGather(const std::string& blob) override;

 private:
  explicit TcpStore(const TcpStoreOptions& options) : options_(options) {}
  absl::Status Listen();
  absl::Status Connect();
  absl::Status AcceptAll(std::chrono::steady_clock::time_point deadline);
  std::string Where() const;  // "addr:port"

  TcpStoreOptions options_;
  int port_ = 0;
  int listen_fd_ = -1;
  int server_fd_ = -1;            // ranks > 0: connection to rank 0
  std::vector<int> peer_fds_;     // rank 0: connection of each rank (index 0 unused)
};

}  // namespace colossal::parallel
