// The GPU peak table by device name.
#include "runtime/worker/device_peak.h"

#include <catch2/catch.hpp>

namespace colossal::worker {
namespace {

TEST_CASE("dense bf16 peaks by device name") {
  CHECK(GpuBf16PeakFlops("NVIDIA H100 80GB HBM3") == 989.4e12);
  CHECK(GpuBf16PeakFlops("NVIDIA H200") == 989.4e12);
  CHECK(GpuBf16PeakFlops("NVIDIA A100-SXM4-80GB") == 312e12);
  CHECK(GpuBf16PeakFlops("NVIDIA GeForce RTX 4090") == 0);
  CHECK(GpuPeaksOf("NVIDIA GH200 480GB").fp32_flops == 66.9e12);
  CHECK(GpuPeaksOf("NVIDIA A100-SXM4-80GB").fp32_flops == 19.5e12);
  CHECK(GpuPeaksOf("Tesla T4").fp32_flops == 0);
  CHECK(GpuBf16PeakFlops("") == 0);
}

}  // namespace
}  // namespace colossal::worker
