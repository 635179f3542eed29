// The twins a kernel test runs: every backend that registered an implementation of a
// dispatch table for a dtype, the reference (the specification) first. A test that loops
// over Twins() checks each against the reference, so a new backend's twin is tested by
// registering it (twins_test.cc holds every table to a reference and a CPU twin).
// A device twin runs in its own memory through the harness (twin_case.h).
#pragma once

#include <vector>

#include "kernels/common/dispatch.h"

namespace colossal::kernels::testing {

template <typename Fn>
std::vector<Backend> Twins(const Dispatch<Fn>& table, DType dtype = DType::kF32) {
  std::vector<Backend> out;
  for (Backend b : {Backend::kRef, Backend::kCpu, Backend::kCuda}) {
    if (table.Find(b, dtype) != nullptr) out.push_back(b);
  }
  return out;
}

}  // namespace colossal::kernels::testing
