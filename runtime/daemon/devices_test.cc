// Device discovery: one cpu entry per online core; CUDA entries only where a driver is.
#include "runtime/daemon/devices.h"

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <unistd.h>

namespace colossal::daemon {
namespace {

TEST_CASE("devices list every online CPU core, then the CUDA devices") {
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  REQUIRE(cores >= 1);
  REQUIRE(OnlineCpuCores() == cores);
  const std::vector<v1::Device> devices = DiscoverDevices();
  const std::vector<v1::Device> cuda = DiscoverCudaDevices();
  REQUIRE(devices.size() == static_cast<size_t>(cores) + cuda.size());
  for (long i = 0; i < cores; ++i) {
    REQUIRE(devices[i].kind() == "cpu");
    REQUIRE(devices[i].index() == i);
    REQUIRE_FALSE(devices[i].name().empty());
    REQUIRE(devices[i].memory_bytes() == 0);
  }
  for (size_t i = 0; i < cuda.size(); ++i) {
    const v1::Device& d = devices[cores + i];
    REQUIRE(d.kind() == "cuda");
    REQUIRE(d.index() == static_cast<int>(i));
    REQUIRE(d.name() == cuda[i].name());
    REQUIRE(d.memory_bytes() > 0);
  }
}

TEST_CASE("no CUDA driver means no CUDA devices, not an error") {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib != nullptr) {
    dlclose(lib);
    SUCCEED("a CUDA driver is installed here; covered by the test above");
    return;
  }
  REQUIRE(DiscoverCudaDevices().empty());
}

}  // namespace
}  // namespace colossal::daemon
