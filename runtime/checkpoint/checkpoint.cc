// Checkpoint directories: atomic write (tmp dir + rename), discovery of the latest
// complete step, pruning, and reading a step back.
#include "runtime/checkpoint/checkpoint.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/file_io.h"

namespace colossal::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kStepPrefix = "step-";

// Parses a canonical non-negative decimal (no sign, no leading zeros unless "0").
std::optional<int64_t> ParseCanonical(std::string_view s) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

// The step of a directory entry named exactly "step-<N>".
std::optional<int64_t> StepOfName(std::string_view name) {
  if (!name.starts_with(kStepPrefix)) return std::nullopt;
  return ParseCanonical(name.substr(kStepPrefix.size()));
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsComplete(const std::string& step_dir) {
  for (std::string_view f : {kModelFile, kOptimizerFile, kStateFile}) {
    if (!IsRegularFile(absl::StrCat(step_dir, "/", std::string(f)))) return false;
  }
  return true;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return ErrnoError(ec.value(), absl::StrCat("remove ", path));
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat("rename ", from, " to ", to));
  }
  return absl::OkStatus();
}

// For ".step-<N>.tmp-<pid>" / ".step-<N>.old-<pid>": the pid; nullopt for other names.
std::optional<int64_t> InFlightPid(std::string_view name) {
  if (!name.starts_with(".step-")) return std::nullopt;
  size_t dash = name.rfind('-');
  if (dash < 4) return std::nullopt;
  std::string_view kind = name.substr(dash - 4, 4);
  if (kind != ".tmp" && kind != ".old") return std::nullopt;
  return ParseCanonical(name.substr(dash + 1));
}

bool ProcessAlive(int64_t pid) {
  if (pid <= 0 || pid > INT32_MAX) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

struct StepEntry {
  int64_t step;
  std::string path;
};

// Complete step directories under `dir`, unsorted. NotFound when `dir` is missing.
absl::StatusOr<std::vector<StepEntry>> ListComplete(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return ErrnoError(ec.value(), absl::StrCat("list checkpoint directory ", dir));
  std::vector<StepEntry> out;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::optional<int64_t> step = StepOfName(name);
    if (!step) continue;
    std::string path = StepDir(dir, *step);
    if (IsComplete(path)) out.push_back({*step, path});
  }
  if (ec) return ErrnoError(ec.value(), absl::StrCat("list checkpoint directory ", dir));
  return out;
}

absl::Status Prune(const std::string& dir, int64_t step, int64_t keep) {
  const std::string pid = std::to_string(::getpid());
  if (keep > 0) {
    ASSIGN_OR_RETURN(std::vector<StepEntry> steps, ListComplete(dir));
    std::erase_if(steps, [&](const StepEntry& e) { return e.step == step; });
    std::sort(steps.begin(), steps.end(),
              [](const StepEntry& a, const StepEntry& b) { return a.step > b.step; });
    for (size_t i = static_cast<size_t>(keep - 1); i < steps.size(); ++i) {
      std::string doomed = absl::StrCat(dir, "/.step-", steps[i].step, ".old-", pid);
      RETURN_IF_ERROR(Rename(steps[i].path, doomed));
      RETURN_IF_ERROR(RemoveTree(doomed));
    }
  }
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return ErrnoError(ec.value(), absl::StrCat("list checkpoint directory ", dir));
  std::vector<std::string> stale;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::optional<int64_t> owner = InFlightPid(name);
    if (owner && (*owner == ::getpid() || !ProcessAlive(*owner))) {
      stale.push_back(it->path().string());
    }
    // Shard staging of this or an earlier step: every rank finished writing it (the
    // writer of a sharded checkpoint publishes after a barrier).
    if (name.starts_with(".step-") && name.ends_with(".shards")) {
      std::optional<int64_t> staged =
          ParseCanonical(std::string_view(name).substr(6, name.size() - 6 - 7));
      if (staged && *staged <= step) stale.push_back(it->path().string());
    }
  }
  if (ec) return ErrnoError(ec.value(), absl::StrCat("list checkpoint directory ", dir));
  for (const std::string& path : stale) RETURN_IF_ERROR(RemoveTree(path));
  return absl::OkStatus();
}

// Steps 1–3 of WriteCheckpoint, given the tmp directory to use.
absl::Status WriteAndPublish(const std::string& dir, int64_t step, const std::string& tmp,
                             std::span<const TensorView> model,
                             std::span<const TensorView> optimizer,
                             const std::string& state_json,
                             std::span<const std::string> extra_files) {
  if (::mkdir(tmp.c_str(), 0755) != 0) {
    return ErrnoError(errno, absl::StrCat("create ", tmp));
  }
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(tmp, "/", std::string(kModelFile)), model,
                                   {{"format", "pt"}, {"colossal_step", std::to_string(step)}}));
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(tmp, "/", std::string(kOptimizerFile)), optimizer,
                                   {{"colossal_step", std::to_string(step)}}));
  RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(tmp, "/", std::string(kStateFile)), state_json));
  for (const std::string& extra : extra_files) {
    RETURN_IF_ERROR(Rename(extra, absl::StrCat(tmp, "/", fs::path(extra).filename().string())));
  }
  RETURN_IF_ERROR(FsyncDir(tmp));

  const std::string final_dir = StepDir(dir, step);
  const std::string old = absl::StrCat(dir, "/.step-", step, ".old-", ::getpid());
  bool had_old = false;
  if (Exists(final_dir)) {
    if (Exists(old)) RETURN_IF_ERROR(RemoveTree(old));
    RETURN_IF_ERROR(Rename(final_dir, old));
    had_old = true;
  }
  absl::Status published = Rename(tmp, final_dir);
  if (!published.ok()) {
    if (had_old) (void)Rename(old, final_dir);  // Best effort: put the previous one back.
    return published;
  }
  absl::Status synced = FsyncDir(dir);
  if (!synced.ok()) {
    return absl::Status(synced.code(),
                        absl::StrCat(final_dir, " is complete but its durability is unknown: ",
                                     synced.message()));
  }
  if (had_old) RETURN_IF_ERROR(RemoveTree(old));
  return absl::OkStatus();
}

}  // namespace

std::string StepDir(const std::string& dir, int64_t step) {
  return absl::StrCat(dir, "/", std::string(kStepPrefix), step);
}

std::string StagingDir(const std::string& dir, int64_t step) {
  return absl::StrCat(dir, "/.step-", step, ".shards");
}

std::string ShardFile(const std::string& dir, std::string_view kind, int rank) {
  return absl::StrCat(dir, "/", std::string(kind), "-", rank, ".safetensors");
}

absl::StatusOr<std::vector<std::string>> StepFiles(const std::string& step_dir,
                                                   std::string_view kind) {
  const std::string whole = std::string(kind) + ".safetensors";
  const std::string shard_prefix = std::string(kind) + "-";
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(step_dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == whole || (name.starts_with(shard_prefix) && name.ends_with(".safetensors"))) {
      out.push_back(it->path().string());
    }
  }
  if (ec) return ErrnoError(ec.value(), absl::StrCat("list checkpoint ", step_dir));
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status WriteCheckpoint(const std::string& dir, int64_t step,
                             std::span<const TensorView> model,
                             std::span<const TensorView> optimizer,
                             const std::string& state_json, int64_t keep,
                             std::span<const std::string> extra_files) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint in ", dir, ": step ", step, " is negative"));
  }
  if (keep < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint in ", dir, ": keep ", keep, " is negative (0 keeps all)"));
  }
  if (!nlohmann::json::accept(state_json)) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", StepDir(dir, step), ": ",
                                                   std::string(kStateFile),
                                                   " content is not valid JSON"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoError(ec.value(), absl::StrCat("create checkpoint directory ", dir));

  const std::string tmp = absl::StrCat(dir, "/.step-", step, ".tmp-", ::getpid());
  if (Exists(tmp)) RETURN_IF_ERROR(RemoveTree(tmp));
  absl::Status written =
      WriteAndPublish(dir, step, tmp, model, optimizer, state_json, extra_files);
  if (Exists(tmp)) (void)RemoveTree(tmp);  // Leftover only after a failure.
  RETURN_IF_ERROR(written);

  absl::Status pruned = Prune(dir, step, keep);
  if (!pruned.ok()) {
    return absl::Status(pruned.code(),
                        absl::StrCat(StepDir(dir, step), " was written, but pruning old "
                                     "checkpoints failed: ", pruned.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> LatestCheckpoint(const std::string& dir) {
  if (!Exists(dir)) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::vector<StepEntry> steps, ListComplete(dir));
  if (steps.empty()) return std::optional<std::string>();
  auto best = std::max_element(steps.begin(), steps.end(), [](const StepEntry& a,
                                                               const StepEntry& b) {
    return a.step < b.step;
  });
  return std::optional<std::string>(best->path);
}

absl::StatusOr<int64_t> CheckpointStep(std::string_view step_dir) {
  std::string_view p = step_dir;
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.find_last_of('/');
  std::string_view base = slash == std::string_view::npos ? p : p.substr(slash + 1);
  std::optional<int64_t> step = StepOfName(base);
  if (!step) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", std::string(step_dir), "' is not a checkpoint step directory (expected .../step-<N>)"));
  }
  return *step;
}

absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& step_dir) {
  ASSIGN_OR_RETURN(int64_t step, CheckpointStep(step_dir));
  ASSIGN_OR_RETURN(SafetensorsFile model,
                   SafetensorsFile::Open(absl::StrCat(step_dir, "/", std::string(kModelFile))));
  ASSIGN_OR_RETURN(SafetensorsFile optimizer,
                   SafetensorsFile::Open(absl::StrCat(step_dir, "/", std::string(kOptimizerFile))));
  const std::string state_path = absl::StrCat(step_dir, "/", std::string(kStateFile));
  ASSIGN_OR_RETURN(std::string state_json, ReadFile(state_path));
  if (!nlohmann::json::accept(state_json)) {
    return absl::DataLossError(absl::StrCat(state_path, ": not valid JSON"));
  }
  return Checkpoint{step_dir, step, std::move(model), std::move(optimizer),
                    std::move(state_json)};
}

}  // namespace colossal::checkpoint
