// `colossal`: the command-line entry point. Global flags (anywhere on the line):
// --coordinator HOST:PORT (or COLOSSAL_COORDINATOR), --token-file F (or
// COLOSSAL_TOKEN_FILE), --tls-ca F (or COLOSSAL_TLS_CA).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/job_commands.h"
#include "runtime/worker/worker_main.h"

namespace {

constexpr char kUsage[] =
    "usage: colossal [--coordinator HOST:PORT] [--token-file F] [--tls-ca F] <command> [args]\n"
    "\n"
    "on this machine (an embedded coordinator and node daemon):\n"
    "  run JOB.yaml [--set key.path=value]... [--threads N] [--no-resume] [--no-checkpoints]\n"
    "                       train a job and exit with its result\n"
    "with a coordinator (colossald --coordinator; default 127.0.0.1:29500):\n"
    "  submit JOB.yaml [--set ...]... [--follow] [--validate-only]   submit; prints the job id\n"
    "  status [JOB] [--json] [--active] [--limit N]   jobs, or one job\n"
    "  logs JOB [--rank N] [-f]                       a job's worker logs\n"
    "  cancel JOB                                      stop a job's workers\n"
    "  nodes [--json]                                  registered node daemons\n"
    "tools:\n"
    "  validate JOB.yaml [--set ...]   check a job and print its effective spec\n"
    "  graph JOB.yaml [--export FILE]  print the model (parameters, FLOPs, memory)\n"
    "                                  or write its graph file\n"
    "  tokenize IN OUT [--tokenizer bytes]   write a token file\n"
    "  generate CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "                       sample text from a checkpoint\n"
    "  export CHECKPOINT OUT.safetensors   one Hugging Face file from any checkpoint\n"
    "                       (sharded ZeRO checkpoints included)\n"
    "  kernels              list the kernels and their twins\n"
    "  worker --spec FILE   run one rank (what node daemons start)\n"
    "\n"
    "exit codes: 0 success, 1 failure, 2 bad input or rejected job\n";

}  // namespace

int main(int argc, char** argv) {
  colossal::base::InitLogging();
  colossal::cli::ClientOptions client;
  client.coordinator = colossal::base::GetEnv(colossal::base::kEnvCoordinator).value_or(client.coordinator);
  client.security.token_file = colossal::base::GetEnv(colossal::base::kEnvTokenFile).value_or("");
  client.security.tls_ca = colossal::base::GetEnv(colossal::base::kEnvTlsCa).value_or("");
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto take = [&](const char* flag, std::string* out) {
      const std::string f = flag;
      if (a == f && i + 1 < argc) {
        *out = argv[++i];
        return true;
      }
      if (a.rfind(f + "=", 0) == 0) {
        *out = a.substr(f.size() + 1);
        return true;
      }
      return false;
    };
    if (take("--coordinator", &client.coordinator) || take("--token-file", &client.security.token_file) ||
        take("--tls-ca", &client.security.tls_ca)) {
      continue;
    }
    args.push_back(a);
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  using namespace colossal::cli;
  if (command == "run") return RunCommand(rest);
  if (command == "submit") return SubmitCommand(client, rest);
  if (command == "status") return StatusCommand(client, rest);
  if (command == "logs") return LogsCommand(client, rest);
  if (command == "cancel") return CancelCommand(client, rest);
  if (command == "nodes") return NodesCommand(client, rest);
  if (command == "graph") return GraphCommand(rest);
  if (command == "export") return ExportCommand(rest);
  if (command == "tokenize") return TokenizeCommand(rest);
  if (command == "generate") return GenerateCommand(rest);
  if (command == "validate") return ValidateCommand(rest);
  if (command == "kernels") return KernelsCommand(rest);
  if (command == "worker") return colossal::worker::WorkerMain(rest);
  std::fprintf(stderr, "colossal: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
