// fork + exec of one worker, process-group signals, reaping, log tails.
#include "runtime/daemon/worker_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace colossal::daemon {
namespace {

std::string ErrnoText(int err) { return std::string(strerror(err)); }

// Reads exactly `size` bytes unless EOF comes first; returns the count read.
ssize_t ReadFull(int fd, void* buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, static_cast<char*>(buf) + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// The child between fork and exec: async-signal-safe calls only, no allocation.
[[noreturn]] void ChildExec(const char* path, char* const* argv, char* const* envp, int log_fd,
                            int null_fd, int error_fd, pid_t parent) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);  // EINVAL is fine
  }
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int err = 0;
  if (getppid() != parent) {
    err = ESRCH;  // the daemon died before prctl took effect
  } else if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) {
    err = errno;
  } else {
    // Every other descriptor of the daemon (sockets, other logs) closes on exec;
    // error_fd is already close-on-exec.
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(path, argv, envp);
    err = errno;
  }
  ssize_t ignored = write(error_fd, &err, sizeof(err));
  (void)ignored;
  _exit(127);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CurrentEnvironment() {
  std::vector<std::pair<std::string, std::string>> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = strchr(*e, '=');
    if (eq == nullptr) continue;
    env.emplace_back(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  return env;
}

void SetEnv(std::vector<std::pair<std::string, std::string>>& env, const std::string& name,
            const std::string& value) {
  for (auto& [key, old] : env) {
    if (key == name) {
      old = value;
      return;
    }
  }
  env.emplace_back(name, value);
}

absl::StatusOr<pid_t> SpawnProcess(const LaunchSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("empty worker command");
  // Everything the child needs, built before fork.
  std::vector<std::string> env_strings;
  env_strings.reserve(spec.env.size());
  for (const auto& [key, value] : spec.env) env_strings.push_back(key + "=" + value);
  std::vector<char*> argv, envp;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const int log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open worker log ", spec.log_path, ": ", ErrnoText(errno)));
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int error_pipe[2];
  if (null_fd < 0 || pipe2(error_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::InternalError(absl::StrCat("cannot set up worker I/O: ", ErrnoText(err)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    ChildExec(argv[0], argv.data(), envp.data(), log_fd, null_fd, error_pipe[1], parent);
  }
  const int fork_errno = errno;
  close(error_pipe[1]);
  close(log_fd);
  close(null_fd);
  if (pid < 0) {
    close(error_pipe[0]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", ErrnoText(fork_errno)));
  }
  // EOF: exec succeeded (the pipe closed on exec). An int: the child's errno.
  int child_errno = 0;
  const ssize_t n = ReadFull(error_pipe[0], &child_errno, sizeof(child_errno));
  close(error_pipe[0]);
  if (n == 0) return pid;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof(child_errno))) {
    return absl::InternalError(absl::StrCat("worker ", spec.argv[0], " failed before exec"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("exec ", spec.argv[0], ": ", ErrnoText(child_errno)));
}

std::optional<ProcessExit> TryReap(pid_t pid) {
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno == EINTR) return std::nullopt;
    return ProcessExit{-1, 0};  // ECHILD: someone else reaped it; its status is lost
  }
  if (info.si_pid == 0) return std::nullopt;
  SignalGroup(pid, SIGKILL);  // leftovers of its group; the zombie keeps the id ours
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ProcessExit{-1, 0};
  }
  if (WIFSIGNALED(status)) return ProcessExit{0, WTERMSIG(status)};
  return ProcessExit{WEXITSTATUS(status), 0};
}

void SignalGroup(pid_t pgid, int signal) {
  if (pgid > 1) kill(-pgid, signal);
}

std::string ReadTail(const std::string& path, int max_lines, size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string data;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    const off_t want = std::min<off_t>(st.st_size, static_cast<off_t>(max_bytes));
    data.resize(static_cast<size_t>(want));
    const ssize_t n = pread(fd, data.data(), data.size(), st.st_size - want);
    data.resize(n > 0 ? static_cast<size_t>(n) : 0);
    // Read from the middle of a line: drop that fragment unless it is all there is.
    const size_t first_newline = data.find('\n');
    if (want < st.st_size && first_newline != std::string::npos &&
        first_newline + 1 < data.size()) {
      data.erase(0, first_newline + 1);
    }
  }
  close(fd);
  // Keep the last max_lines lines (a trailing newline does not start a new line).
  size_t end = data.size();
  if (end > 0 && data[end - 1] == '\n') --end;
  size_t start = end;
  int lines = 0;
  while (start > 0) {
    if (data[start - 1] == '\n' && ++lines == max_lines) break;
    --start;
  }
  return data.substr(start);
}

std::string DescribeExit(const ProcessExit& exit) {
  if (exit.signal != 0) return absl::StrCat("signal ", exit.signal, " (", strsignal(exit.signal), ")");
  return absl::StrCat("exit code ", exit.exit_code);
}

}  // namespace colossal::daemon
