// JSONL metric sink.
#include "runtime/worker/metrics.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace colossal::worker {

MetricRecord& MetricRecord::Int(std::string key, int64_t value) {
  fields_.emplace_back(std::move(key), std::to_string(value));
  return *this;
}

MetricRecord& MetricRecord::Ints(std::string key,
                                 const std::vector<std::pair<std::string, int64_t>>& values) {
  std::string object = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StrAppend(&object, i ? ", " : "", "\"", values[i].first, "\": ", values[i].second);
  }
  fields_.emplace_back(std::move(key), object + "}");
  return *this;
}

MetricRecord& MetricRecord::Num(std::string key, double value) {
  // JSON has no NaN/Infinity: write null so readers see the gap.
  fields_.emplace_back(std::move(key),
                       std::isfinite(value) ? absl::StrFormat("%.9g", value) : "null");
  return *this;
}

std::string MetricRecord::ToJson() const {
  std::string s = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    absl::StrAppend(&s, i ? ", " : "", "\"", fields_[i].first, "\": ", fields_[i].second);
  }
  return s + "}";
}

absl::StatusOr<JsonlSink> JsonlSink::Open(const std::string& path, bool truncate) {
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(parent.string(), ": ", ec.message()));
  std::FILE* f = std::fopen(path.c_str(), truncate ? "w" : "a");
  if (f == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  }
  return JsonlSink(f, path);
}

JsonlSink::JsonlSink(JsonlSink&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)), path_(std::move(other.path_)) {}

JsonlSink& JsonlSink::operator=(JsonlSink&& other) noexcept {
  if (this != &other) {
    if (file_) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

JsonlSink::~JsonlSink() {
  if (file_) std::fclose(file_);
}

absl::Status JsonlSink::Write(const MetricRecord& record) {
  std::string line = record.ToJson() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::DataLossError(absl::StrCat(path_, ": write failed"));
  }
  return absl::OkStatus();
}

int64_t PeakResidentBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;  // "VmHWM:  1234 kB"
  }
  return 0;
}

}  // namespace colossal::worker
