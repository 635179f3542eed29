// Metric sinks: per-step metrics as one JSON object per line (metrics.jsonl in the run
// directory), flushed after every record so a crash loses at most the line being
// written. Keys are written in a fixed order. Not thread-safe.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::worker {

// One record: ordered (key, value) pairs; values are numbers (integers print exactly).
class MetricRecord {
 public:
  MetricRecord& Int(std::string key, int64_t value);
  MetricRecord& Num(std::string key, double value);
  // An object of integers: "key": {"a": 1, "b": 2} (in the given order).
  MetricRecord& Ints(std::string key, const std::vector<std::pair<std::string, int64_t>>& values);
  std::string ToJson() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// The process's peak resident memory so far (VmHWM of /proc/self/status), bytes; 0 where
// it cannot be read. The rss_peak metric.
int64_t PeakResidentBytes();

class JsonlSink {
 public:
  // Opens `path` for appending (or truncates when `truncate`), creating directories.
  static absl::StatusOr<JsonlSink> Open(const std::string& path, bool truncate);
  JsonlSink(JsonlSink&& other) noexcept;
  JsonlSink& operator=(JsonlSink&& other) noexcept;
  ~JsonlSink();

  absl::Status Write(const MetricRecord& record);

 private:
  JsonlSink(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace colossal::worker
