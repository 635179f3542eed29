// TcpStore: sockets, deadlines and the length-prefixed framing of tcp_store.h.
#include "parallel/comm/tcp_store.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/env.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x53544c43;          // "CLTS"
constexpr uint64_t kMaxBlobBytes = uint64_t{1} << 30;

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

std::string Errno(int err) { return std::strerror(err); }

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

absl::Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::InternalError(absl::StrCat("TCP store: fcntl(O_NONBLOCK): ", Errno(errno)));
  }
  return absl::OkStatus();
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Writes all of `data` before the deadline. `who` names the peer in errors.
absl::Status SendAll(int fd, const std::string& data, Clock::time_point deadline,
                     const std::string& who) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      int left = MillisLeft(deadline);
      int r = poll(&p, 1, left);
      if (r < 0 && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("TCP store: poll while sending to ", who,
                                                   ": ", Errno(errno)));
      }
      if (r == 0 && left == 0) {
        return absl::DeadlineExceededError(
            absl::StrCat("TCP store: timed out sending to ", who));
      }
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("TCP store: send to ", who, " failed: ", Errno(errno)));
  }
  return absl::OkStatus();
}

// Reads exactly `len` bytes before the deadline.
absl::Status RecvAll(int fd, char* out, size_t len, Clock::time_point deadline,
                     const std::string& who) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = recv(fd, out + done, len - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat("TCP store: ", who, " closed the connection (did it exit?)"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd p{fd, POLLIN, 0};
      int left = MillisLeft(deadline);
      int r = poll(&p, 1, left);
      if (r < 0 && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat("TCP store: poll while receiving from ",
                                                   who, ": ", Errno(errno)));
      }
      if (r == 0 && left == 0) {
        return absl::DeadlineExceededError(
            absl::StrCat("TCP store: timed out waiting for data from ", who));
      }
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("TCP store: receive from ", who, " failed: ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::Status RecvFrame(int fd, std::string& blob, Clock::time_point deadline,
                       const std::string& who) {
  char header[8];
  RETURN_IF_ERROR(RecvAll(fd, header, sizeof(header), deadline, who));
  uint64_t len = GetLE(header, 8);
  if (len > kMaxBlobBytes) {
    return absl::DataLossError(absl::StrCat("TCP store: ", who, " sent a frame of ", len,
                                            " bytes (not a colossal TCP store peer?)"));
  }
  blob.resize(len);
  return RecvAll(fd, blob.data(), len, deadline, who);
}

absl::StatusOr<addrinfo*> Resolve(const std::string& addr, int port, bool passive) {
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  std::string port_text = std::to_string(port);
  int rc = getaddrinfo(addr.c_str(), port_text.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP store: cannot resolve '", addr, "': ", gai_strerror(rc)));
  }
  return result;
}

absl::StatusOr<int> ParseInt(std::string_view name,
                             const std::optional<std::string>& value) {
  if (!value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TCP store: environment variable ", std::string(name),
        " is not set (MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE are all needed)"));
  }
  int out = 0;
  auto [ptr, ec] = std::from_chars(value->data(), value->data() + value->size(), out);
  if (ec != std::errc() || ptr != value->data() + value->size()) {
    return absl::InvalidArgumentError(absl::StrCat("TCP store: ", std::string(name), "='",
                                                   *value, "' is not an integer"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Create(const TcpStoreOptions& options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat("TCP store: rank ", options.rank,
                                                   " is outside a world of size ",
                                                   options.size));
  }
  if (options.port < 0 || options.port > 65535 || (options.rank != 0 && options.port == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP store: port ", options.port,
                     " is not valid (1..65535; 0 only on rank 0, for any free port)"));
  }
  std::unique_ptr<TcpStore> store(new TcpStore(options));
  store->port_ = options.port;
  if (options.size == 1) return store;
  if (options.rank == 0) {
    RETURN_IF_ERROR(store->Listen());
  } else {
    RETURN_IF_ERROR(store->Connect());
  }
  return store;
}

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::FromEnv(std::chrono::milliseconds timeout) {
  TcpStoreOptions options;
  options.timeout = timeout;
  std::optional<std::string> addr = base::GetEnv(base::kEnvMasterAddr);
  if (!addr) {
    return absl::InvalidArgumentError(
        "TCP store: environment variable MASTER_ADDR is not set (MASTER_ADDR, MASTER_PORT, "
        "RANK and WORLD_SIZE are all needed)");
  }
  options.addr = *addr;
  ASSIGN_OR_RETURN(options.port, ParseInt(base::kEnvMasterPort,
                                          base::GetEnv(base::kEnvMasterPort)));
  ASSIGN_OR_RETURN(options.rank, ParseInt(base::kEnvRank, base::GetEnv(base::kEnvRank)));
  ASSIGN_OR_RETURN(options.size,
                   ParseInt(base::kEnvWorldSize, base::GetEnv(base::kEnvWorldSize)));
  if (options.size > 1 && options.port == 0) {
    return absl::InvalidArgumentError("TCP store: MASTER_PORT=0 is not a port the other ranks "
                                      "can find; give rank 0's port");
  }
  return Create(options);
}

TcpStore::~TcpStore() {
  if (listen_fd_ >= 0) close(listen_fd_);
  if (server_fd_ >= 0) close(server_fd_);
  for (int fd : peer_fds_) {
    if (fd >= 0) close(fd);
  }
}

std::string TcpStore::Where() const { return absl::StrCat(options_.addr, ":", port_); }

absl::Status TcpStore::Listen() {
  ASSIGN_OR_RETURN(addrinfo * list, Resolve(options_.addr, options_.port, /*passive=*/true));
  std::string last_error = "no address";
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = Errno(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, std::min(options_.size, SOMAXCONN)) != 0) {
      last_error = Errno(errno);
      close(fd);
      continue;
    }
    sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
    port_ = bound.ss_family == AF_INET6
                ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    listen_fd_ = fd;
    break;
  }
  freeaddrinfo(list);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("TCP store: rank 0 cannot listen on ",
                                               options_.addr, ":", options_.port, ": ",
                                               last_error));
  }
  RETURN_IF_ERROR(SetNonBlocking(listen_fd_));
  peer_fds_.assign(options_.size, -1);
  return absl::OkStatus();
}

absl::Status TcpStore::Connect() {
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  std::string last_error = "no attempt";
  auto backoff = std::chrono::milliseconds(20);
  while (true) {
    auto resolved = Resolve(options_.addr, options_.port, /*passive=*/false);
    if (resolved.ok()) {
      for (addrinfo* ai = *resolved; ai != nullptr && server_fd_ < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
          last_error = Errno(errno);
          continue;
        }
        if (!SetNonBlocking(fd).ok()) {
          close(fd);
          continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
          pollfd p{fd, POLLOUT, 0};
          int r = poll(&p, 1, MillisLeft(deadline));
          int err = ETIMEDOUT;
          socklen_t err_len = sizeof(err);
          if (r > 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
          rc = err == 0 ? 0 : -1;
          errno = err;
        }
        if (rc != 0) {
          last_error = Errno(errno);
          close(fd);
          continue;
        }
        server_fd_ = fd;
      }
      freeaddrinfo(*resolved);
    } else {
      last_error = std::string(resolved.status().message());
    }
    if (server_fd_ >= 0) break;
    if (Clock::now() + backoff >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "TCP store: rank ", options_.rank, " could not connect to rank 0 at ", Where(),
          " within ", options_.timeout.count(), " ms: ", last_error));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
  SetNoDelay(server_fd_);
  std::string hello;
  PutU32(hello, kMagic);
  PutU32(hello, static_cast<uint32_t>(options_.rank));
  PutU32(hello, static_cast<uint32_t>(options_.size));
  return SendAll(server_fd_, hello, deadline, absl::StrCat("rank 0 at ", Where()));
}

absl::Status TcpStore::AcceptAll(Clock::time_point deadline) {
  int missing = 0;
  for (int r = 1; r < options_.size; ++r) missing += peer_fds_[r] < 0;
  while (missing > 0) {
    pollfd p{listen_fd_, POLLIN, 0};
    int left = MillisLeft(deadline);
    int r = poll(&p, 1, left);
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("TCP store: poll on ", Where(), ": ",
                                                 Errno(errno)));
    }
    if (r <= 0) {
      if (left > 0) continue;
      std::vector<int> absent;
      for (int q = 1; q < options_.size; ++q) {
        if (peer_fds_[q] < 0) absent.push_back(q);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "TCP store: rank(s) ", absl::StrJoin(absent, ", "), " of ", options_.size,
          " did not connect to ", Where(), " within ", options_.timeout.count(), " ms"));
    }
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    SetNoDelay(fd);
    char hello[12];
    absl::Status st = RecvAll(fd, hello, sizeof(hello), deadline, "a connecting rank");
    if (!st.ok()) {
      close(fd);
      continue;
    }
    uint32_t magic = static_cast<uint32_t>(GetLE(hello, 4));
    int peer = static_cast<int>(GetLE(hello + 4, 4));
    int peer_size = static_cast<int>(GetLE(hello + 8, 4));
    if (magic != kMagic) {
      close(fd);  // Not one of ours (a port scanner, a stale job): ignore it.
      continue;
    }
    if (peer_size != options_.size || peer < 1 || peer >= options_.size) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(
          "TCP store: a peer at ", Where(), " says it is rank ", peer, " of ", peer_size,
          ", but rank 0 has WORLD_SIZE=", options_.size));
    }
    if (peer_fds_[peer] >= 0) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("TCP store: two processes claim rank ", peer, " at ", Where()));
    }
    peer_fds_[peer] = fd;
    --missing;
  }
  close(listen_fd_);
  listen_fd_ = -1;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> TcpStore::AllGather(const std::string& blob) {
  const int size = options_.size;
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  std::vector<std::string> blobs(size);
  if (size == 1) {
    blobs[0] = blob;
    return blobs;
  }
  if (options_.rank != 0) {
    const std::string who = absl::StrCat("rank 0 at ", Where());
    std::string frame;
    PutU64(frame, blob.size());
    frame += blob;
    RETURN_IF_ERROR(SendAll(server_fd_, frame, deadline, who));
    for (int r = 0; r < size; ++r) RETURN_IF_ERROR(RecvFrame(server_fd_, blobs[r], deadline, who));
    return blobs;
  }
  if (listen_fd_ >= 0) RETURN_IF_ERROR(AcceptAll(deadline));
  blobs[0] = blob;
  // Read every rank's frame as it arrives, so that one slow rank does not hide another.
  std::vector<std::string> partial(size);
  std::vector<uint64_t> need(size, 8);  // bytes still missing of the header, then the body
  std::vector<bool> in_body(size, false), done(size, false);
  done[0] = true;
  int remaining = size - 1;
  while (remaining > 0) {
    std::vector<pollfd> fds;
    std::vector<int> ranks;
    for (int r = 1; r < size; ++r) {
      if (!done[r]) {
        fds.push_back({peer_fds_[r], POLLIN, 0});
        ranks.push_back(r);
      }
    }
    int left = MillisLeft(deadline);
    int n = poll(fds.data(), fds.size(), left);
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("TCP store: poll: ", Errno(errno)));
    }
    if (n <= 0) {
      if (left > 0) continue;
      return absl::DeadlineExceededError(
          absl::StrCat("TCP store: rank(s) ", absl::StrJoin(ranks, ", "),
                       " sent no blob to rank 0 (", Where(), ") within ",
                       options_.timeout.count(), " ms"));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const int r = ranks[i];
      std::string& buf = partial[r];
      char chunk[65536];
      size_t want = std::min<uint64_t>(need[r], sizeof(chunk));
      ssize_t got = recv(peer_fds_[r], chunk, want, 0);
      if (got == 0) {
        return absl::UnavailableError(absl::StrCat("TCP store: rank ", r,
                                                   " closed its connection to rank 0 (",
                                                   Where(), "); did it exit?"));
      }
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return absl::UnavailableError(
            absl::StrCat("TCP store: receive from rank ", r, " failed: ", Errno(errno)));
      }
      buf.append(chunk, static_cast<size_t>(got));
      need[r] -= static_cast<uint64_t>(got);
      if (need[r] > 0) continue;
      if (!in_body[r]) {
        uint64_t len = GetLE(buf.data(), 8);
        if (len > kMaxBlobBytes) {
          return absl::DataLossError(
              absl::StrCat("TCP store: rank ", r, " sent a frame of ", len, " bytes"));
        }
        in_body[r] = true;
        buf.clear();
        need[r] = len;
        if (len > 0) continue;
      }
      blobs[r] = std::move(buf);
      done[r] = true;
      --remaining;
    }
  }
  std::string reply;
  for (const std::string& b : blobs) {
    PutU64(reply, b.size());
    reply += b;
  }
  for (int r = 1; r < size; ++r) {
    RETURN_IF_ERROR(SendAll(peer_fds_[r], reply, deadline, absl::StrCat("rank ", r)));
  }
  return blobs;
}

}  // namespace colossal::parallel
