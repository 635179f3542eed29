// Internals of the softmax cross-entropy CPU twin that its test and bench reach for:
// which instruction set the row loops use. Not part of the kernel contract
// (softmax_xent.h); nothing outside kernels/softmax_xent/ should include this.
#pragma once

namespace colossal::kernels::internal {

// The row loops are compiled twice: for the build's baseline (-march=x86-64-v3, AVX2)
// and for AVX-512 (512-bit vectors double FastExp's throughput on Sapphire Rapids;
// Zen 4 runs them as two halves, no slower). kAuto takes AVX-512 where the CPU and the
// OS support it.
enum class SoftmaxXentIsa { kAuto, kAvx2 };

// Not thread-safe with respect to running kernels: call between kernel calls only.
void SetSoftmaxXentIsaForTesting(SoftmaxXentIsa isa);

// Whether the CPU twin currently runs its AVX-512 loops.
bool SoftmaxXentUsesAvx512();

}  // namespace colossal::kernels::internal
