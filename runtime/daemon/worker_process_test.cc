// Worker processes: exec, log capture, exit codes and signals, exec failures, sessions,
// descriptors and signal state of the child, parent-death signal, group kills, tails.
#include "runtime/daemon/worker_process.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "runtime/daemon/test_util.h"

namespace colossal::daemon {
namespace {

using namespace std::chrono_literals;
using testing::Alive;
using testing::Eventually;
using testing::ReadFile;
using testing::ScratchDir;

LaunchSpec Shell(const std::string& script, const std::string& log) {
  LaunchSpec spec;
  spec.argv = {"/bin/sh", "-c", script, "worker"};
  spec.env = CurrentEnvironment();
  spec.log_path = log;
  return spec;
}

// Reaps `pid` within `timeout` (SIGKILLs it on timeout so the test leaves nothing behind).
ProcessExit ReapWithin(pid_t pid, std::chrono::milliseconds timeout) {
  std::optional<ProcessExit> exit;
  if (!Eventually([&] { return (exit = TryReap(pid)).has_value(); }, timeout)) {
    SignalGroup(pid, SIGKILL);
    Eventually([&] { return (exit = TryReap(pid)).has_value(); }, 5000ms);
    FAIL("process " << pid << " did not exit in time");
  }
  return *exit;
}

TEST_CASE("stdout and stderr are appended to the log; the exit code is reported") {
  const std::string dir = ScratchDir("wp-exit");
  const std::string log = dir + "/worker.log";
  { std::ofstream(log) << "earlier\n"; }
  auto pid = SpawnProcess(Shell("echo out; echo err >&2; echo \"args: $*\"; exit 3", log));
  REQUIRE(pid.ok());
  const ProcessExit exit = ReapWithin(*pid, 5000ms);
  REQUIRE(exit.exit_code == 3);
  REQUIRE(exit.signal == 0);
  REQUIRE(ReadFile(log) == "earlier\nout\nerr\nargs: \n");
  REQUIRE(DescribeExit(exit) == "exit code 3");
}

TEST_CASE("a worker killed by a signal reports the signal") {
  const std::string dir = ScratchDir("wp-signal");
  auto pid = SpawnProcess(Shell("kill -KILL $$", dir + "/worker.log"));
  REQUIRE(pid.ok());
  const ProcessExit exit = ReapWithin(*pid, 5000ms);
  REQUIRE(exit.signal == SIGKILL);
  REQUIRE_THAT(DescribeExit(exit), Catch::StartsWith("signal 9"));
}

TEST_CASE("exec failure is an error naming the program, and nothing is left running") {
  const std::string dir = ScratchDir("wp-missing");
  LaunchSpec spec;
  spec.argv = {dir + "/no-such-worker", "--spec", "x"};
  spec.log_path = dir + "/worker.log";
  auto pid = SpawnProcess(spec);
  REQUIRE_FALSE(pid.ok());
  REQUIRE_THAT(std::string(pid.status().message()),
               Catch::Contains("exec " + dir + "/no-such-worker: No such file or directory"));
  // The failed child was reaped by SpawnProcess: no child is left to wait for.
  REQUIRE(waitpid(-1, nullptr, WNOHANG) == -1);
  REQUIRE(errno == ECHILD);
  spec.log_path = dir + "/missing-dir/worker.log";
  REQUIRE_THAT(std::string(SpawnProcess(spec).status().message()),
               Catch::Contains("cannot open worker log"));
}

TEST_CASE("the child leads its own session, gets exactly the given environment") {
  const std::string dir = ScratchDir("wp-env");
  const std::string log = dir + "/worker.log";
  LaunchSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo \"A=$A B=$B\"; exec /bin/sleep 30", "worker"};
  spec.env = {{"A", "1"}, {"B", "two words"}};
  SetEnv(spec.env, "A", "one");
  SetEnv(spec.env, "C", "3");
  REQUIRE(spec.env.size() == 3);
  spec.log_path = log;
  auto pid = SpawnProcess(spec);
  REQUIRE(pid.ok());
  REQUIRE(getpgid(*pid) == *pid);
  REQUIRE(getsid(*pid) == *pid);
  REQUIRE(Eventually([&] { return ReadFile(log) == "A=one B=two words\n"; }, 5000ms));
  SignalGroup(*pid, SIGTERM);
  REQUIRE(ReapWithin(*pid, 5000ms).signal == SIGTERM);
}

TEST_CASE("descriptors of the daemon do not leak; blocked or ignored signals are reset") {
  const std::string dir = ScratchDir("wp-fds");
  const std::string log = dir + "/worker.log";
  const int leaky = open("/dev/null", O_RDONLY);  // no O_CLOEXEC on purpose
  REQUIRE(leaky > 2);
  // Block SIGTERM in this thread and ignore it process-wide, as a daemon's main might.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigset_t old_mask;
  pthread_sigmask(SIG_BLOCK, &term, &old_mask);
  struct sigaction ignore {}, old_action{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ignore, &old_action);
  const std::string script = "if [ -e /proc/self/fd/" + std::to_string(leaky) +
                             " ]; then echo leaked; else echo closed; fi; exec /bin/sleep 30";
  auto pid = SpawnProcess(Shell(script, log));
  sigaction(SIGTERM, &old_action, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  close(leaky);
  REQUIRE(pid.ok());
  REQUIRE(Eventually([&] { return ReadFile(log) == "closed\n"; }, 5000ms));
  SignalGroup(*pid, SIGTERM);
  REQUIRE(ReapWithin(*pid, 5000ms).signal == SIGTERM);
}

TEST_CASE("a worker dies with the thread that started it (parent-death signal)") {
  const std::string dir = ScratchDir("wp-pdeath");
  absl::StatusOr<pid_t> pid;
  std::thread starter([&] { pid = SpawnProcess(Shell("exec /bin/sleep 30", dir + "/w.log")); });
  starter.join();
  REQUIRE(pid.ok());
  REQUIRE(ReapWithin(*pid, 5000ms).signal == SIGKILL);
}

TEST_CASE("group signals reach grandchildren; reaping kills leftovers of the group") {
  const std::string dir = ScratchDir("wp-group");
  const std::string log = dir + "/worker.log";
  // The shell starts a grandchild, prints its pid, and waits for it.
  auto pid = SpawnProcess(Shell("/bin/sleep 30 & echo $!; wait", log));
  REQUIRE(pid.ok());
  pid_t grandchild = 0;
  REQUIRE(Eventually([&] { return std::sscanf(ReadFile(log).c_str(), "%d", &grandchild) == 1; },
                     5000ms));
  REQUIRE(Alive(grandchild));
  SignalGroup(*pid, SIGTERM);
  REQUIRE(ReapWithin(*pid, 5000ms).signal == SIGTERM);
  REQUIRE(Eventually([&] { return !Alive(grandchild); }, 5000ms));

  // The leader exits 0 while its grandchild still runs: TryReap kills the grandchild.
  const std::string log2 = dir + "/worker2.log";
  auto pid2 = SpawnProcess(Shell("/bin/sleep 30 & echo $!; exit 0", log2));
  REQUIRE(pid2.ok());
  REQUIRE(ReapWithin(*pid2, 5000ms).exit_code == 0);
  grandchild = 0;
  REQUIRE(std::sscanf(ReadFile(log2).c_str(), "%d", &grandchild) == 1);
  REQUIRE(Eventually([&] { return !Alive(grandchild); }, 5000ms));
}

TEST_CASE("ReadTail keeps the last lines of a log") {
  const std::string dir = ScratchDir("wp-tail");
  const std::string path = dir + "/log";
  {
    std::ofstream out(path);
    for (int i = 1; i <= 30; ++i) out << "line " << i << "\n";
  }
  std::string expected;
  for (int i = 11; i <= 30; ++i) expected += "line " + std::to_string(i) + "\n";
  REQUIRE(ReadTail(path) == expected);
  REQUIRE(ReadTail(path, 2) == "line 29\nline 30\n");
  { std::ofstream(path, std::ios::app) << "partial"; }
  REQUIRE(ReadTail(path, 2) == "line 30\npartial");
  // Only the last 10 bytes are read ("30\npartial"); the cut line is dropped.
  REQUIRE(ReadTail(path, 20, 10) == "partial");
  REQUIRE(ReadTail(path, 20, 4) == "tial");  // one long line: its end is kept
  REQUIRE(ReadTail(dir + "/absent").empty());
  { std::ofstream(path, std::ios::trunc) << "one\n"; }
  REQUIRE(ReadTail(path) == "one\n");
}

}  // namespace
}  // namespace colossal::daemon
