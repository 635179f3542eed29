"""cuda_twin_test: a kernel test run again with the family's CUDA twins linked in.

The harness (twin_case.h) then runs every case on the cuda twin too, in device memory,
against the same reference and tolerance; the test carries tags = ["gpu"] (left out of a
plain `bazel test //...`, run by `bazel test --config=gpu //...`) and fails where no
device is present (//kernels/testing:cuda_present). Incompatible, so skipped, where the
build has no nvcc.
"""

def cuda_twin_test(name, srcs, deps, size = "small", **kwargs):
    native.cc_test(
        name = name,
        srcs = srcs,
        size = size,
        deps = deps + ["//kernels/testing:cuda_present"],
        tags = ["gpu"],
        **kwargs
    )
