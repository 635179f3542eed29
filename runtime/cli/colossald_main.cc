// `colossald`: the coordinator (`--coordinator`) or a node daemon (`--join ADDR`).
//   colossald --coordinator [--listen HOST:PORT] [--state-dir DIR] [--token-file F]
//             [--tls-cert F --tls-key F [--tls-ca F]] [--insecure]
//   colossald --join HOST:PORT [--slots N] [--node-id ID] [--address HOST] [--state-dir DIR]
//             [--token-file F] [--tls-ca F] [--tls-cert F --tls-key F]
// SIGINT/SIGTERM shut it down gracefully (a daemon stops its workers first).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/cli/args.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/daemon/node_daemon.h"

namespace {

using colossal::cli::ParseArgs;
using colossal::cli::ReportError;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

void WaitForSignal() {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

std::string DefaultStateDir(const std::string& leaf) {
  auto home = colossal::base::GetEnv(colossal::base::kEnvHome);
  return (home ? *home : std::string("/tmp")) + "/.colossal/" + leaf;
}

colossal::rpc::SecurityOptions Security(const colossal::cli::ParsedArgs& a) {
  colossal::rpc::SecurityOptions s;
  s.token_file = a.Get("--token-file");
  s.tls_cert = a.Get("--tls-cert");
  s.tls_key = a.Get("--tls-key");
  s.tls_ca = a.Get("--tls-ca");
  s.insecure = a.Has("--insecure");
  return s;
}

constexpr char kUsage[] =
    "usage: colossald --coordinator [--listen HOST:PORT] [--state-dir DIR] [--token-file F]\n"
    "                 [--tls-cert F --tls-key F [--tls-ca F]] [--insecure]\n"
    "       colossald --join HOST:PORT [--slots N] [--node-id ID] [--address HOST]\n"
    "                 [--state-dir DIR] [--token-file F] [--tls-ca F] [--tls-cert F --tls-key F]\n";

}  // namespace

int main(int argc, char** argv) {
  colossal::base::InitLogging();
  std::vector<std::string> argv_list(argv + 1, argv + argc);
  auto args = ParseArgs("colossald", argv_list,
                        {"--listen", "--state-dir", "--token-file", "--tls-cert", "--tls-key",
                         "--tls-ca", "--join", "--slots", "--node-id", "--address"},
                        {"--coordinator", "--insecure", "--help"});
  if (!args.ok()) {
    std::fprintf(stderr, "colossald: %s\n%s", std::string(args.status().message()).c_str(), kUsage);
    return 2;
  }
  if (args->Has("--help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args->Has("--coordinator") == args->Has("--join") || !args->positional.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (args->Has("--coordinator")) {
    colossal::coordinator::CoordinatorOptions options;
    options.listen = args->Get("--listen", options.listen);
    options.state_dir = args->Get("--state-dir", DefaultStateDir("coordinator"));
    options.security = Security(*args);
    auto coord = colossal::coordinator::Coordinator::Start(options);
    if (!coord.ok()) return ReportError("colossald", coord.status());
    LOG_INFO("coordinator listening on {} (state in {})", (*coord)->address(), options.state_dir);
    WaitForSignal();
    LOG_INFO("shutting down");
    (*coord)->Shutdown();
    return 0;
  }
  colossal::daemon::DaemonOptions options;
  options.coordinator = args->Get("--join");
  options.security = Security(*args);
  if (args->Has("--slots") && (!absl::SimpleAtoi(args->Get("--slots"), &options.slots) || options.slots < 1)) {
    return ReportError("colossald", absl::InvalidArgumentError("--slots must be a positive integer"));
  }
  options.node_id = args->Get("--node-id");
  options.address = args->Get("--address", options.address);
  options.state_dir = args->Get("--state-dir", DefaultStateDir(
      absl::StrCat("node-", options.node_id.empty() ? std::to_string(getpid()) : options.node_id)));
  auto node = colossal::daemon::NodeDaemon::Start(options);
  if (!node.ok()) return ReportError("colossald", node.status());
  LOG_INFO("node {} joined {} with {} slots (state in {})", (*node)->node_id(), options.coordinator,
           options.slots, options.state_dir);
  WaitForSignal();
  LOG_INFO("stopping workers and shutting down");
  (*node)->Stop(/*kill_workers=*/true);
  return 0;
}
