// The environment table: names, meanings, and the single getenv() of the project.
#include "runtime/base/env.h"

#include <charconv>

#include <cstdlib>

#include "runtime/base/check.h"

namespace colossal::base {

const std::vector<EnvKnob>& EnvTable() {
  static const std::vector<EnvKnob> table = {
      {"COLOSSAL_LOG_LEVEL", "trace|debug|info|warn|error (default info)"},
      {"COLOSSAL_THREADS", "compute threads per rank (default: cores / ranks)"},
      {"COLOSSAL_PROGRESS", "1 forces the terminal progress line, 0 disables it"},
      {"COLOSSAL_PROFILE", "1 times every op of the step and logs the table at the end"},
      {"COLOSSAL_NVME_IO", "NVMe tier I/O: threads (pread/pwrite pool) or auto (default: io_uring where allowed)"},
      {"COLOSSAL_COORDINATOR", "coordinator address for the CLI and workers (HOST:PORT)"},
      {"COLOSSAL_JOB_ID", "job id of a worker (set by its daemon)"},
      {"COLOSSAL_ATTEMPT", "attempt number of a worker (set by its daemon)"},
      {"COLOSSAL_DEVICE", "a worker's device, cuda:<ordinal> (set by its daemon for resources.device: cuda; "
                          "unset: the ordinal is LOCAL_RANK)"},
      {"COLOSSAL_TOKEN_FILE", "bearer-token file for coordinator RPCs (CLI, workers)"},
      {"COLOSSAL_TLS_CA", "PEM roots to verify the coordinator's TLS certificate (CLI, workers)"},
      {"OMP_NUM_THREADS", "fallback thread count when COLOSSAL_THREADS is unset"},
      {"RANK", "global rank (torchrun-style launchers)"},
      {"WORLD_SIZE", "number of ranks (torchrun-style launchers)"},
      {"LOCAL_RANK", "rank on this node (torchrun-style launchers)"},
      {"LOCAL_WORLD_SIZE", "ranks on this node (torchrun-style launchers)"},
      {"MASTER_ADDR", "rendezvous host (torchrun-style launchers)"},
      {"MASTER_PORT", "rendezvous port (torchrun-style launchers)"},
      {"HOME", "default parent of colossald state directories (~/.colossal/...)"},
      {"TEST_TMPDIR", "scratch directory Bazel gives each test"},
      {"TEST_SRCDIR", "runfiles root Bazel gives each test"},
  };
  return table;
}

std::optional<std::string> GetEnv(std::string_view name) {
  bool known = false;
  for (const EnvKnob& knob : EnvTable()) known |= (name == knob.name);
  COL_CHECK_MSG(known, "environment knob missing from EnvTable()");
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr || value[0] == '\0') return std::nullopt;
  return std::string(value);
}

std::string CudaDeviceName(int ordinal) { return "cuda:" + std::to_string(ordinal); }

int CudaOrdinalOf(std::string_view device) {
  constexpr std::string_view kPrefix = "cuda:";
  if (device.substr(0, kPrefix.size()) != kPrefix || device.size() == kPrefix.size()) return -1;
  const char* begin = device.data() + kPrefix.size();
  const char* end = device.data() + device.size();
  int ordinal = -1;
  const auto [ptr, ec] = std::from_chars(begin, end, ordinal);
  return ec == std::errc() && ptr == end && ordinal >= 0 ? ordinal : -1;
}

}  // namespace colossal::base
