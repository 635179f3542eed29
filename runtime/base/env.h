// The one table of environment variables the project reads, and the only place that
// reads them (STYLE.md: "environment knobs are read in one table, in one file").
// Libraries read knobs through GetEnv(kX); a name not in the table is a bug (COL_CHECK).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace colossal::base {

struct EnvKnob {
  const char* name;
  const char* help;
};

// Every knob, in the order `colossal env` prints them.
const std::vector<EnvKnob>& EnvTable();

// The value of `name` (which must be in EnvTable()), or nullopt when unset or empty.
std::optional<std::string> GetEnv(std::string_view name);

// Knob names, for call sites (a typo is a compile error rather than a silent miss).
inline constexpr std::string_view kEnvLogLevel = "COLOSSAL_LOG_LEVEL";
inline constexpr std::string_view kEnvThreads = "COLOSSAL_THREADS";
inline constexpr std::string_view kEnvProgress = "COLOSSAL_PROGRESS";
inline constexpr std::string_view kEnvProfile = "COLOSSAL_PROFILE";
inline constexpr std::string_view kEnvNvmeIo = "COLOSSAL_NVME_IO";
inline constexpr std::string_view kEnvCoordinator = "COLOSSAL_COORDINATOR";
inline constexpr std::string_view kEnvJobId = "COLOSSAL_JOB_ID";
inline constexpr std::string_view kEnvAttempt = "COLOSSAL_ATTEMPT";
inline constexpr std::string_view kEnvDevice = "COLOSSAL_DEVICE";
// The value of COLOSSAL_DEVICE (and of a rank's placement): "cuda:<ordinal>"; the ordinal
// back from it, -1 for anything else ("cpu", "", "cuda:x", "cuda:1 NVIDIA ...").
std::string CudaDeviceName(int ordinal);
int CudaOrdinalOf(std::string_view device);
inline constexpr std::string_view kEnvTokenFile = "COLOSSAL_TOKEN_FILE";
inline constexpr std::string_view kEnvTlsCa = "COLOSSAL_TLS_CA";
inline constexpr std::string_view kEnvOmpNumThreads = "OMP_NUM_THREADS";
inline constexpr std::string_view kEnvRank = "RANK";
inline constexpr std::string_view kEnvWorldSize = "WORLD_SIZE";
inline constexpr std::string_view kEnvLocalRank = "LOCAL_RANK";
inline constexpr std::string_view kEnvLocalWorldSize = "LOCAL_WORLD_SIZE";
inline constexpr std::string_view kEnvMasterAddr = "MASTER_ADDR";
inline constexpr std::string_view kEnvMasterPort = "MASTER_PORT";
inline constexpr std::string_view kEnvHome = "HOME";
inline constexpr std::string_view kEnvTestTmpDir = "TEST_TMPDIR";
inline constexpr std::string_view kEnvTestSrcDir = "TEST_SRCDIR";

}  // namespace colossal::base
