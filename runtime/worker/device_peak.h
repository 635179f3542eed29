// The compute peak MFU is measured against on the CPU backend: the FLOP rate of a
// large fp32 GEMM through the backend's own Matmul on the current OpenMP team, measured
// once per process and thread count (about 0.3 s) and cached.
#pragma once

#include <string>

namespace colossal::worker {

// FLOP/s of a 1536³ fp32 GEMM (one warm-up call, then the best of five).
double MatmulPeakFlops();

// A GPU's published peaks by name, from NVIDIA's data sheets (SXM parts): dense bf16
// tensor-core FLOP/s (H100, H200 989.4 T; A100 312 T; B200 2250 T) and CUDA-core fp32
// (66.9 T, 19.5 T, 80 T); zeros for a device the table does not know. On a GPU, MFU is
// against the bf16 figure (reported as 0 when unknown); the GPU kernel bench rates the
// fp32 GEMM against the fp32 one.
struct GpuPeaks {
  double bf16_flops = 0, fp32_flops = 0;
};
GpuPeaks GpuPeaksOf(const std::string& device_name);
inline double GpuBf16PeakFlops(const std::string& device_name) { return GpuPeaksOf(device_name).bf16_flops; }
// The name of CUDA device 0 as this process sees it (the driver, through dlopen; after
// CUDA_VISIBLE_DEVICES narrowing: the rank's GPU), or "" without one.
std::string CudaDevice0Name();

}  // namespace colossal::worker
