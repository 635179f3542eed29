// Process supervision primitives of the node daemon: start one worker (fork + exec in
// its own session, stdout and stderr appended to a log file, killed with SIGKILL if the
// starting thread dies), signal its process group, reap it, and read the tail of a log.
// Does not own which workers run or the coordinator protocol (supervisor.h does).
// Every function here is thread-compatible; none installs signal handlers.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::daemon {

struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] is the program's path (execve: no PATH search)
  std::vector<std::pair<std::string, std::string>> env;  // the complete environment
  std::string log_path;           // stdout and stderr are appended here (created 0644)
};

// The calling process's environment, in order (passed through to workers).
std::vector<std::pair<std::string, std::string>> CurrentEnvironment();

// Sets `name` to `value` in `env`: replaces an existing entry in place, else appends.
void SetEnv(std::vector<std::pair<std::string, std::string>>& env, const std::string& name,
            const std::string& value);

// Starts `spec` as a child process and returns its pid once exec has succeeded. The
// child leads a new session and process group (pgid == pid), has SIGKILL as its
// parent-death signal (tied to the *calling thread*: call this from a thread that lives
// as long as the worker should), default signal dispositions, an empty signal mask,
// stdin from /dev/null, and no other descriptor of this process. Everything is prepared
// before fork; the child makes only async-signal-safe calls. Errors: the log cannot be
// opened, fork fails, or exec fails (the child is reaped; the message names the program
// and errno's text, e.g. "exec /x/worker: No such file or directory").
absl::StatusOr<pid_t> SpawnProcess(const LaunchSpec& spec);

struct ProcessExit {
  int exit_code = 0;  // valid when signal == 0; -1 when the status was lost (ECHILD)
  int signal = 0;     // the signal that ended it, or 0
};

// Non-blocking: nullopt while `pid` runs. Once it has exited, SIGKILLs what is left of
// its process group (while the zombie leader still holds the group id, so the id cannot
// have been reused), reaps it and returns how it ended.
std::optional<ProcessExit> TryReap(pid_t pid);

// Sends `signal` to the process group `pgid` (a worker's pid). ESRCH is not an error.
void SignalGroup(pid_t pgid, int signal);

// The last `max_lines` lines of the file at `path`, from its last `max_bytes` bytes (a
// line cut by that window is left out unless it is the only one); "" when unreadable.
std::string ReadTail(const std::string& path, int max_lines = 20, size_t max_bytes = 8192);

// "exit code 3", "signal 9 (Killed)".
std::string DescribeExit(const ProcessExit& exit);

}  // namespace colossal::daemon
