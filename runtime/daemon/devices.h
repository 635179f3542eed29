// What this machine can run ranks on: its online CPU cores and the CUDA devices the
// driver reports. CUDA is found at run time (dlopen of libcuda.so.1): no CUDA headers,
// no link dependency; a machine without a driver simply has no CUDA devices.
// Does not own scheduling (the coordinator decides which device a rank uses).
#pragma once

#include <vector>

#include "proto/coordinator.pb.h"

namespace colossal::daemon {

// Online CPU cores (sysconf(_SC_NPROCESSORS_ONLN)); at least 1.
int OnlineCpuCores();

// CUDA devices through the driver API (cuInit, cuDeviceGetCount, cuDeviceGet,
// cuDeviceGetName, cuDeviceTotalMem_v2): kind "cuda", index = ordinal, the driver's name
// and total memory. Empty when libcuda.so.1 is absent or cuInit fails; never an error.
std::vector<v1::Device> DiscoverCudaDevices();

// Every device of this machine: one kind "cpu" entry per online core (index = core
// number, name = the CPU model from /proc/cpuinfo or "cpu", memory_bytes = 0: host
// memory is shared by all cores), then the CUDA devices. Thread-safe.
std::vector<v1::Device> DiscoverDevices();

}  // namespace colossal::daemon
