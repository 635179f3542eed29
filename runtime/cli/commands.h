// The `colossal` commands that need no coordinator: graph (model summary / export),
// tokenize, generate, validate, export (a checkpoint as one Hugging Face file) and kernels. Each returns the process exit code: 0 success, 2 bad input
// (with a one-line error on stderr), 1 runtime failure.
#pragma once

#include <string>
#include <vector>

namespace colossal::cli {

int GraphCommand(const std::vector<std::string>& args);
int ExportCommand(const std::vector<std::string>& args);
int TokenizeCommand(const std::vector<std::string>& args);
int GenerateCommand(const std::vector<std::string>& args);
int ValidateCommand(const std::vector<std::string>& args);
int KernelsCommand(const std::vector<std::string>& args);

}  // namespace colossal::cli
