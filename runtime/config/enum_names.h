// The YAML spelling of every JobSpec enum: one table per enum, read by the parser
// (job_spec.cc), the writer (to_yaml.cc) and the *Name() functions. Internal to
// //runtime/config.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/base/check.h"
#include "runtime/config/job_spec.h"

namespace colossal::config::internal {

template <typename E>
using EnumNames = std::vector<std::pair<std::string, E>>;

inline const EnumNames<OptimizerType> kOptimizerNames = {
    {"adamw", OptimizerType::kAdamW},
    {"lamb", OptimizerType::kLamb},
    {"lars", OptimizerType::kLars},
    {"sgd", OptimizerType::kSgd},
};
inline const EnumNames<LrDecay> kLrDecayNames = {
    {"cosine", LrDecay::kCosine},
    {"linear", LrDecay::kLinear},
    {"constant", LrDecay::kConstant},
};
inline const EnumNames<Precision> kPrecisionNames = {
    {"fp32", Precision::kFp32},
    {"bf16", Precision::kBf16},
    {"fp16", Precision::kFp16},
};
inline const EnumNames<ReduceDType> kReduceDTypeNames = {
    {"fp32", ReduceDType::kFp32},
    {"bf16", ReduceDType::kBf16},
};
inline const EnumNames<TensorMode> kTensorModeNames = {
    {"1d", TensorMode::k1d},
    {"2d", TensorMode::k2d},
    {"2.5d", TensorMode::k2p5d},
    {"3d", TensorMode::k3d},
};
inline const EnumNames<PipelineSchedule> kPipelineScheduleNames = {
    {"gpipe", PipelineSchedule::kGpipe},
    {"1f1b", PipelineSchedule::k1f1b},
    {"interleaved", PipelineSchedule::kInterleaved},
    {"zb-h1", PipelineSchedule::kZbH1},
    {"zbv", PipelineSchedule::kZbv},
};
inline const EnumNames<SequenceMode> kSequenceModeNames = {
    {"ring", SequenceMode::kRing},
    {"all_to_all", SequenceMode::kAllToAll},
};
inline const EnumNames<Placement> kPlacementNames = {
    {"static", Placement::kStatic},
    {"auto", Placement::kAuto},
};
inline const EnumNames<DeviceKind> kDeviceKindNames = {
    {"cpu", DeviceKind::kCpu},
    {"cuda", DeviceKind::kCuda},
};

// The spelling of `value`; every enumerator has one (a missing row is a bug).
template <typename E>
std::string_view NameOf(const EnumNames<E>& names, E value) {
  for (const auto& [name, v] : names) {
    if (v == value) return name;
  }
  COL_CHECK_MSG(false, "enum value missing from its name table");
  return {};
}

}  // namespace colossal::config::internal
