// The compute peak MFU is measured against on the CPU backend: the FLOP rate of a
// large fp32 GEMM through the backend's own Matmul on the current OpenMP team, measured
// once per process and thread count (about 0.3 s) and cached.
#pragma once

#include <string>

namespace colossal::worker {

// FLOP/s of a 1536³ fp32 GEMM (one warm-up call, then the best of five).
double MatmulPeakFlops();

// On a GPU, MFU is against the device's dense bf16 tensor-core peak from NVIDIA's data
// sheets, by name (H100 and H200 SXM 989.4 TFLOP/s, A100 312, B200 2250); 0 for a device
// this table does not know (MFU is then reported as 0).
double GpuBf16PeakFlops(const std::string& device_name);
// The name of CUDA device 0 as this process sees it (the driver, through dlopen; after
// CUDA_VISIBLE_DEVICES narrowing: the rank's GPU), or "" without one.
std::string CudaDevice0Name();

}  // namespace colossal::worker
