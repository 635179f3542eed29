// Device selection, CUDA_VISIBLE_DEVICES narrowing and the plugin.
#include "runtime/worker/device_setup.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/common/cuda_plugin.h"
#include "runtime/base/env.h"

namespace colossal::worker {

absl::StatusOr<std::string> NarrowVisibleDevices(const std::optional<std::string>& colossal_device,
                                                 const std::optional<std::string>& local_rank,
                                                 const std::optional<std::string>& visible) {
  int ordinal = 0;
  std::string from = "the default";
  if (colossal_device) {
    const std::string& d = *colossal_device;
    ordinal = base::CudaOrdinalOf(d);
    if (ordinal < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(base::kEnvDevice), " is '", d, "': expected cuda:<ordinal>, e.g. cuda:0"));
    }
    from = absl::StrCat(std::string(base::kEnvDevice), " ", d);
  } else if (local_rank) {
    if (!absl::SimpleAtoi(*local_rank, &ordinal) || ordinal < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(base::kEnvLocalRank), " is '", *local_rank, "': expected a rank >= 0"));
    }
    from = absl::StrCat(std::string(base::kEnvLocalRank), " ", ordinal);
  }
  if (!visible) return std::to_string(ordinal);
  // A scheduler's allocation ("2,3", or GPU UUIDs): the ordinal indexes it.
  std::vector<std::string> listed = absl::StrSplit(*visible, ',', absl::SkipWhitespace());
  if (ordinal >= static_cast<int>(listed.size())) {
    return absl::InvalidArgumentError(absl::StrCat(from, " asks for CUDA device ", ordinal,
                                                   " but CUDA_VISIBLE_DEVICES='", *visible, "' lists ",
                                                   listed.size(), listed.size() == 1 ? " device" : " devices"));
  }
  return std::string(absl::StripAsciiWhitespace(listed[ordinal]));
}

absl::StatusOr<memory::Place> SetUpDevice(const config::JobSpec& spec, std::string* description) {
  if (spec.resources.device != config::DeviceKind::kCuda) {
    if (description) *description = "device: cpu";
    return memory::Place::Host();
  }
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  absl::StatusOr<std::string> narrowed =
      NarrowVisibleDevices(base::GetEnv(base::kEnvDevice), base::GetEnv(base::kEnvLocalRank),
                           visible != nullptr && *visible != '\0' ? std::optional<std::string>(visible) : std::nullopt);
  if (!narrowed.ok()) return narrowed.status();
  setenv("CUDA_VISIBLE_DEVICES", narrowed->c_str(), 1);
  absl::StatusOr<std::string> plugin = kernels::LoadCudaPlugin();
  if (!plugin.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("resources.device: cuda: ", plugin.status().message()));
  }
  absl::StatusOr<memory::Place> place =
      memory::Place::Device(kernels::Backend::kCuda, 0, kernels::Stream{kernels::Backend::kCuda, nullptr});
  if (!place.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("resources.device: cuda (CUDA_VISIBLE_DEVICES=", *narrowed,
                                                      "): ", place.status().message()));
  }
  if (description) *description = absl::StrCat("device: cuda, CUDA_VISIBLE_DEVICES=", *narrowed, ", plugin ", *plugin);
  return place;
}

}  // namespace colossal::worker
