// The device a worker trains on. resources.device: cpu trains on the host place; cuda
// takes one GPU per rank:
//   the ordinal: COLOSSAL_DEVICE ("cuda:<k>", set by the node daemon from the
//   coordinator's placement), else LOCAL_RANK (torchrun-style launchers, Slurm), else 0;
//   CUDA_VISIBLE_DEVICES is narrowed to that one device before CUDA starts in this
//   process (an existing list — a scheduler's allocation — is indexed by the ordinal), so
//   the rank's GPU is device 0 here; then the CUDA plugin is loaded and the place made on
//   device 0 with kernels on its default stream.
// Errors name what is missing: a malformed or out-of-range ordinal (InvalidArgument), no
// CUDA in this build, no plugin or CUDA library, no visible device (FailedPrecondition).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "memory/place.h"
#include "runtime/config/job_spec.h"

namespace colossal::worker {

// The CUDA_VISIBLE_DEVICES value that leaves exactly this rank's GPU visible, from the
// environment's COLOSSAL_DEVICE, LOCAL_RANK and CUDA_VISIBLE_DEVICES (nullopt: unset).
absl::StatusOr<std::string> NarrowVisibleDevices(const std::optional<std::string>& colossal_device,
                                                 const std::optional<std::string>& local_rank,
                                                 const std::optional<std::string>& visible);

// The place of the job's resources.device (the host for cpu); for cuda narrows
// CUDA_VISIBLE_DEVICES in this process's environment and loads the plugin first, so it
// must run before anything starts CUDA. `description` gets a line for the log.
absl::StatusOr<memory::Place> SetUpDevice(const config::JobSpec& spec, std::string* description);

}  // namespace colossal::worker
