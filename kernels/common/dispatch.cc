// The registry of dispatch tables, for listing which twins exist.
#include "kernels/common/dispatch.h"

#include <mutex>

namespace colossal::kernels {
namespace {

struct TableRecord {
  std::string name;
  const void* table;
  std::array<std::array<bool, 4>, kNumBackends> (*probe)(const void*);
};

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}

std::vector<TableRecord>& Records() {
  static std::vector<TableRecord> records;
  return records;
}

}  // namespace

namespace internal {
void RecordTable(const std::string& name, const void* table,
                 std::array<std::array<bool, 4>, kNumBackends> (*probe)(const void*)) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Records().push_back({name, table, probe});
}
}  // namespace internal

std::vector<DispatchInfo> ListDispatchTables() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::vector<DispatchInfo> out;
  for (const TableRecord& r : Records()) out.push_back({r.name, r.probe(r.table)});
  return out;
}

}  // namespace colossal::kernels
