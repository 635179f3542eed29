// ForkRanks: fork, port hand-off through pipes, bounded reaping, kill by pid.
#include "parallel/comm/testing/fork_ranks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace colossal::parallel::testing {
namespace {

using Clock = std::chrono::steady_clock;

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) done += static_cast<size_t>(n);
  }
}

std::string ReadAvailable(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return out;
  }
}

// Reads one int from `fd` before the deadline; -1 on failure.
int ReadPort(int fd, Clock::time_point deadline) {
  std::string text;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(left, 0)) <= 0) continue;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n <= 0) return -1;
    if (c == '\n') return std::atoi(text.c_str());
    text.push_back(c);
  }
  return -1;
}

[[noreturn]] void RunChild(int rank, int size, const RankBody& body, const ForkOptions& options,
                           int port_in, int port_out, int error_out) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
  const Clock::time_point deadline = Clock::now() + options.deadline;
  TcpStoreOptions store_options;
  store_options.addr = "127.0.0.1";
  store_options.rank = rank;
  store_options.size = size;
  store_options.timeout = options.store_timeout;
  if (rank != 0) {
    store_options.port = ReadPort(port_in, deadline);
    if (store_options.port <= 0) {
      WriteAll(error_out, "never received rank 0's port");
      _exit(3);
    }
  }
  absl::Status status;
  auto store = TcpStore::Create(store_options);
  if (!store.ok()) {
    status = store.status();
  } else {
    if (rank == 0) WriteAll(port_out, absl::StrCat((*store)->port(), "\n"));
    status = body(rank, size, **store);
  }
  if (!status.ok()) WriteAll(error_out, status.ToString());
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(status.ok() ? 0 : 1);
}

}  // namespace

std::string RankExit::Describe() const {
  std::string text = absl::StrCat("rank ", rank, " (pid ", pid, "): ");
  if (killed_at_deadline) {
    absl::StrAppend(&text, "still running at the deadline, killed");
  } else if (exited) {
    absl::StrAppend(&text, "exited ", code);
  } else {
    absl::StrAppend(&text, "killed by signal ", signal);
  }
  if (!error.empty()) absl::StrAppend(&text, ": ", error);
  return text;
}

std::string Failures(const std::vector<RankExit>& exits) {
  std::string text;
  for (const RankExit& e : exits) {
    if (!e.ok()) absl::StrAppend(&text, e.Describe(), "\n");
  }
  return text;
}

std::vector<RankExit> ForkRanks(int size, const RankBody& body, const ForkOptions& options) {
  const Clock::time_point deadline = Clock::now() + options.deadline;
  std::vector<RankExit> exits(size);
  std::vector<int> port_write(size, -1), error_read(size, -1);
  int port_from_rank0[2] = {-1, -1};
  if (pipe2(port_from_rank0, O_CLOEXEC) != 0) return exits;
  for (int r = 0; r < size; ++r) {
    int port_pipe[2], error_pipe[2];
    if (pipe2(port_pipe, O_CLOEXEC) != 0 || pipe2(error_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
      break;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      // Keep only this child's own pipe ends, so EOF reaches whoever waits on the others.
      for (int q = 0; q < r; ++q) {
        close(port_write[q]);
        close(error_read[q]);
      }
      close(port_pipe[1]);
      close(error_pipe[0]);
      close(port_from_rank0[0]);
      if (r != 0) close(port_from_rank0[1]);
      RunChild(r, size, body, options, port_pipe[0], port_from_rank0[1], error_pipe[1]);
    }
    close(port_pipe[0]);
    close(error_pipe[1]);
    port_write[r] = port_pipe[1];
    error_read[r] = error_pipe[0];
    exits[r].rank = r;
    exits[r].pid = pid;
  }
  close(port_from_rank0[1]);
  int port = ReadPort(port_from_rank0[0], deadline);
  close(port_from_rank0[0]);
  for (int r = 1; r < size; ++r) {
    if (port > 0) WriteAll(port_write[r], absl::StrCat(port, "\n"));
  }
  // Reap until all are gone or the deadline passes; then kill the rest by pid.
  std::vector<bool> reaped(size, false);
  int left = size;
  for (int r = 0; r < size; ++r) {
    if (exits[r].pid <= 0) {
      reaped[r] = true;
      --left;
    }
  }
  auto record = [&](int r, int status) {
    reaped[r] = true;
    --left;
    exits[r].exited = WIFEXITED(status);
    exits[r].code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    exits[r].signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    exits[r].error = ReadAvailable(error_read[r]);
  };
  while (left > 0 && Clock::now() < deadline) {
    for (int r = 0; r < size; ++r) {
      if (reaped[r]) continue;
      int status = 0;
      if (waitpid(exits[r].pid, &status, WNOHANG) == exits[r].pid) record(r, status);
    }
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (int r = 0; r < size; ++r) {
    if (reaped[r]) continue;
    kill(exits[r].pid, SIGKILL);
    int status = 0;
    waitpid(exits[r].pid, &status, 0);
    record(r, status);
    exits[r].killed_at_deadline = true;
  }
  for (int r = 0; r < size; ++r) {
    if (port_write[r] >= 0) close(port_write[r]);
    if (error_read[r] >= 0) close(error_read[r]);
  }
  return exits;
}

}  // namespace colossal::parallel::testing
