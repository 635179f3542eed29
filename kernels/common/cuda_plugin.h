// The CUDA backend as a plugin: every CUDA twin, the kCuda backend memory and the
// cuBLASLt state live in libcolossal_cuda.so (//:libcolossal_cuda.so, built where the
// build found nvcc), which a process loads when a job or command asks for the GPU. A CPU
// job therefore never maps CUDA's libraries, and the binaries start on nodes that have
// none. The plugin's twins register in this process's dispatch tables as it loads (its
// references to them bind to the executable, which links with -rdynamic).
//
// Where the plugin is looked for, first hit wins:
//   $COLOSSAL_CUDA_PLUGIN (a file), then libcolossal_cuda.so beside the executable, then
//   ../lib/libcolossal_cuda.so from it (the bundle's layout).
// CUDA's own libraries (cudart, cuBLASLt) are taken from the node: first the dynamic
// linker's search (LD_LIBRARY_PATH, the ldconfig cache), then $CUDA_PATH/lib64 and
// $CUDA_PATH/lib, then /usr/local/cuda/lib64 and the plugin's build-time rpath.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace colossal::kernels {

// Whether this build has a CUDA backend to load at all.
bool CudaBackendBuilt();

// Loads the plugin once per process (later calls return the first call's result): the
// path it loaded, or FAILED_PRECONDITION naming what is missing (no CUDA in the build, no
// plugin file in any of the places above, or a CUDA library the node lacks, with the
// dynamic linker's message). Thread-safe.
absl::StatusOr<std::string> LoadCudaPlugin();

}  // namespace colossal::kernels
