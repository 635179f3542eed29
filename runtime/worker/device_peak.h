// The compute peak MFU is measured against on the CPU backend: the FLOP rate of a
// large fp32 GEMM through the backend's own Matmul on the current OpenMP team, measured
// once per process and thread count (about 0.3 s) and cached.
#pragma once

namespace colossal::worker {

// FLOP/s of a 1536³ fp32 GEMM (one warm-up call, then the best of five).
double MatmulPeakFlops();

}  // namespace colossal::worker
