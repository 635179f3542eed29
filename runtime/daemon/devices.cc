// CPU cores from sysconf and /proc/cpuinfo; CUDA devices through a dlopen'ed driver.
#include "runtime/daemon/devices.h"

#include <dlfcn.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace colossal::daemon {
namespace {

// The driver API's types, as the ABI defines them (cuda.h is not needed).
using CuResult = int;  // CUDA_SUCCESS == 0
using CuDevice = int;
using CuInitFn = CuResult (*)(unsigned int);
using CuDeviceGetCountFn = CuResult (*)(int*);
using CuDeviceGetFn = CuResult (*)(CuDevice*, int);
using CuDeviceGetNameFn = CuResult (*)(char*, int, CuDevice);
using CuDeviceTotalMemFn = CuResult (*)(size_t*, CuDevice);

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    if (start == std::string::npos) break;
    return line.substr(start);
  }
  return "cpu";
}

}  // namespace

int OnlineCpuCores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? static_cast<int>(n) : 1;
}

std::vector<v1::Device> DiscoverCudaDevices() {
  std::vector<v1::Device> devices;
  // The handle stays open: the driver does not support being unloaded and reloaded.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return devices;
  auto init = reinterpret_cast<CuInitFn>(dlsym(lib, "cuInit"));
  auto get_count = reinterpret_cast<CuDeviceGetCountFn>(dlsym(lib, "cuDeviceGetCount"));
  auto get = reinterpret_cast<CuDeviceGetFn>(dlsym(lib, "cuDeviceGet"));
  auto get_name = reinterpret_cast<CuDeviceGetNameFn>(dlsym(lib, "cuDeviceGetName"));
  auto total_mem = reinterpret_cast<CuDeviceTotalMemFn>(dlsym(lib, "cuDeviceTotalMem_v2"));
  if (init == nullptr || get_count == nullptr || get == nullptr || get_name == nullptr ||
      total_mem == nullptr) {
    return devices;
  }
  if (init(0) != 0) return devices;
  int count = 0;
  if (get_count(&count) != 0) return devices;
  for (int i = 0; i < count; ++i) {
    CuDevice dev = 0;
    if (get(&dev, i) != 0) continue;
    char name[256] = {0};
    if (get_name(name, sizeof(name) - 1, dev) != 0) name[0] = '\0';
    size_t bytes = 0;
    if (total_mem(&bytes, dev) != 0) bytes = 0;
    v1::Device d;
    d.set_kind("cuda");
    d.set_index(i);
    d.set_name(name[0] != '\0' ? name : "cuda");
    d.set_memory_bytes(static_cast<int64_t>(bytes));
    devices.push_back(std::move(d));
  }
  return devices;
}

std::vector<v1::Device> DiscoverDevices() {
  std::vector<v1::Device> devices;
  const int cores = OnlineCpuCores();
  const std::string model = CpuModelName();
  for (int i = 0; i < cores; ++i) {
    v1::Device d;
    d.set_kind("cpu");
    d.set_index(i);
    d.set_name(model);
    d.set_memory_bytes(0);
    devices.push_back(std::move(d));
  }
  for (v1::Device& d : DiscoverCudaDevices()) devices.push_back(std::move(d));
  return devices;
}

}  // namespace colossal::daemon
