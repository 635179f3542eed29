// Checkpoint directories: how a training state is laid out on disk, written atomically,
// found again after a crash, and pruned. Owns directory layout and crash safety; the
// byte format of the files is safetensors.h's, and what the tensors and the state JSON
// mean is the worker's.
//
// Layout: <dir>/step-<N>/ holding model.safetensors, optimizer.safetensors and
// state.json, where N is the number of optimizer steps done (decimal, no padding).
// A step directory is "complete" when all three are regular files in it. Directories
// named .step-<N>.tmp-<pid> and .step-<N>.old-<pid> are in-flight writes and deletions;
// readers ignore them.
//
// Concurrency: one writer per <dir> at a time (in a job, rank 0 or one rank per shard
// directory). Readers may run while a writer works: they only ever see complete step
// directories, because a step directory appears by rename.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/checkpoint/safetensors.h"

namespace colossal::checkpoint {

inline constexpr std::string_view kModelFile = "model.safetensors";
inline constexpr std::string_view kOptimizerFile = "optimizer.safetensors";
inline constexpr std::string_view kStateFile = "state.json";

// "<dir>/step-<step>".
std::string StepDir(const std::string& dir, int64_t step);

// Writes checkpoint `step` under `dir` (created if missing):
//  1. writes the three files into <dir>/.step-<N>.tmp-<pid>/, fsyncing each file and
//     then that directory;
//  2. if <dir>/step-<N> exists, renames it to .step-<N>.old-<pid>;
//  3. renames the tmp directory to step-<N> and fsyncs <dir>;
//  4. deletes the old step-<N> (if any), then prunes: keeps the `keep` newest complete
//     checkpoints counting the one just written (which is never deleted; keep = 0 keeps
//     all) and deletes .tmp/.old directories whose <pid> is no longer a live process on
//     this host. Deletion renames to .old first, so a crash mid-delete never leaves a
//     partial step-<M>.
// model.safetensors carries metadata {"format": "pt", "colossal_step": "<N>"} (the
// first so that Hugging Face loaders accept it), optimizer.safetensors
// {"colossal_step": "<N>"}.
// On a failure in steps 1–3 nothing new is at step-<N> (a previous step-<N> is put back)
// and the tmp directory is removed. If only the final fsync of <dir> fails, the
// complete step-<N> stays in place and the error says its durability is unknown.
// A failure while pruning is returned after the checkpoint is in place (the message
// says so). `state_json` must be valid JSON (InvalidArgument otherwise); step >= 0,
// keep >= 0.
//
// `extra_files` (already written, fsynced, on the same file system) are moved into the
// step directory with their file names before it is published: the per-rank shard files
// of a sharded (ZeRO) checkpoint, which the other ranks write under StagingDir().
absl::Status WriteCheckpoint(const std::string& dir, int64_t step,
                             std::span<const TensorView> model,
                             std::span<const TensorView> optimizer,
                             const std::string& state_json, int64_t keep,
                             std::span<const std::string> extra_files = {});

// "<dir>/.step-<step>.shards": where ranks write their shard files for rank 0 to move
// into the checkpoint (readers ignore dot directories; pruning removes stale ones).
std::string StagingDir(const std::string& dir, int64_t step);

// "<dir>/<kind>-<rank>.safetensors", kind "model" or "optimizer": the shard file of rank
// `rank` > 0 of a sharded checkpoint (rank 0's shard is the step's kModelFile /
// kOptimizerFile).
std::string ShardFile(const std::string& dir, std::string_view kind, int rank);

// The files of step directory `step_dir` holding `kind` ("model" or "optimizer")
// tensors: "<kind>.safetensors" and every shard file "<kind>-<rank>.safetensors",
// sorted by path. Errors only when the directory cannot be listed.
absl::StatusOr<std::vector<std::string>> StepFiles(const std::string& step_dir,
                                                   std::string_view kind);

// The path of the complete step directory with the highest step under `dir`, or
// nullopt when there is none (including when `dir` does not exist). Incomplete step
// directories and in-flight .tmp/.old directories are ignored. Errors only when `dir`
// exists but cannot be listed.
absl::StatusOr<std::optional<std::string>> LatestCheckpoint(const std::string& dir);

// The step N of a path ending in "step-<N>" (a trailing '/' is allowed).
// InvalidArgument otherwise.
absl::StatusOr<int64_t> CheckpointStep(std::string_view step_dir);

// A checkpoint read back: both safetensors files opened and validated (see
// SafetensorsFile::Open) and state.json read and checked to be JSON.
struct Checkpoint {
  std::string path;  // The step directory.
  int64_t step = 0;
  SafetensorsFile model;
  SafetensorsFile optimizer;
  std::string state_json;
};
absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& step_dir);

}  // namespace colossal::checkpoint
