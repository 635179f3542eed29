// The compute peak MFU is measured against on the CPU backend: the FLOP rate of a
// large fp32 GEMM through the backend's own Matmul on the current OpenMP team, measured
// once per process (about 0.1 s) and cached.
#pragma once

namespace colossal::worker {

// FLOP/s of a 1024³ fp32 GEMM (best of a few repetitions).
double MatmulPeakFlops();

}  // namespace colossal::worker
