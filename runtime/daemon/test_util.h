// Helpers shared by the daemon's tests: scratch directories, bounded waits, process
// liveness and file reading. Test-only.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/base/env.h"

namespace colossal::daemon::testing {

// A fresh directory under TEST_TMPDIR (or /tmp).
inline std::string ScratchDir(const std::string& name) {
  const auto root = std::filesystem::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp"));
  const auto dir = root / ("daemon-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while `pid` exists and is not a zombie.
inline bool Alive(pid_t pid) {
  if (kill(pid, 0) != 0) return errno != ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'Z';
}

// Polls `pred` every 10 ms until it holds or `timeout` passes; returns its last value.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= end) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace colossal::daemon::testing
