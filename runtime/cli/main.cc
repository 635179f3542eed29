// `colossal`: the command-line entry point. Dispatches to the subcommands.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/base/logging.h"
#include "runtime/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: colossal <command> [args]\n"
    "\n"
    "commands:\n"
    "  run JOB.yaml [--set key.path=value]... [--threads N] [--no-resume] [--no-checkpoints]\n"
    "                       train a job on this machine\n"
    "  validate JOB.yaml [--set ...]   check a job and print its effective spec\n"
    "  graph JOB.yaml [--export FILE]  print the model (parameters, FLOPs, memory)\n"
    "                                  or write its graph file\n"
    "  tokenize IN OUT [--tokenizer bytes]   write a token file\n"
    "  generate CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "                       sample text from a checkpoint\n"
    "  kernels              list the kernels and their twins\n"
    "\n"
    "exit codes: 0 success, 1 runtime failure, 2 bad input\n";

}  // namespace

int main(int argc, char** argv) {
  colossal::base::InitLogging();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "run") return colossal::cli::RunCommand(args);
  if (command == "graph") return colossal::cli::GraphCommand(args);
  if (command == "tokenize") return colossal::cli::TokenizeCommand(args);
  if (command == "generate") return colossal::cli::GenerateCommand(args);
  if (command == "validate") return colossal::cli::ValidateCommand(args);
  if (command == "kernels") return colossal::cli::KernelsCommand(args);
  std::fprintf(stderr, "colossal: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
