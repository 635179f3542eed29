"""cuda_library: compiles .cu sources with the toolkit's nvcc into an alwayslink cc_library.

    load("//third_party/cuda:cuda.bzl", "cuda_library")
    cuda_library(name = "gelu_cuda", srcs = ["gelu_cuda.cu"], deps = [":gelu"])

Each .cu becomes one position-independent object (nvcc -c, the cc toolchain's compiler
as host compiler), compiled with the headers and include paths of `deps` (their CcInfo),
so a .cu includes project headers exactly as a .cc does. The objects and `deps` (plus
@local_cuda//:cuda_runtime) form a cc_library with alwayslink = True, so the twins'
static Registrars run in every binary that links it.

Where the toolkit or its nvcc is missing the target is incompatible with every platform
(as @local_cuda's missing targets are): skipped by `bazel build //...`, an error naming
the constraint when asked for by name. Use if_nvcc from @local_cuda//:defs.bzl to add a
cuda_library to a target that must build either way.

GPU architectures: --define=cuda_archs=90 (the default: Hopper, SASS for sm_90 plus
compute_90 PTX so newer GPUs JIT it); a comma list such as 80,90 adds SASS for each.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")
load("@local_cuda//:defs.bzl", "cuda_root", "nvcc_available")

_NVCC_FLAGS = [
    "-std=c++20",
    "-O3",
    "--expt-relaxed-constexpr",
    "--extended-lambda",
    "-Xcompiler=-fPIC",
    "-Xcompiler=-fno-math-errno",
    "-Xcompiler=-Wall",
    "-Xcompiler=-Wno-unused-parameter",
    "-Xcompiler=-Wno-sign-compare",
    "-Xcompiler=-Wno-missing-field-initializers",
]

def _gencode(archs):
    flags = []
    last = None
    for arch in archs.split(","):
        arch = arch.strip()
        if not arch:
            continue
        flags.append("-gencode=arch=compute_%s,code=sm_%s" % (arch, arch))
        last = arch
    if last:
        flags.append("-gencode=arch=compute_%s,code=compute_%s" % (last, last))
    return flags

def _cuda_objects_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    merged = cc_common.merge_cc_infos(cc_infos = [d[CcInfo] for d in ctx.attr.deps])
    comp = merged.compilation_context
    inputs = depset(ctx.files.srcs + ctx.files.hdrs, transitive = [comp.headers])
    include_flags = ["-I."]
    for d in comp.quote_includes.to_list() + comp.includes.to_list():
        include_flags.append("-I" + d)
    for d in comp.system_includes.to_list():
        include_flags.append("-isystem=" + d)
    define_flags = ["-D" + d for d in comp.defines.to_list()]
    archs = ctx.var.get("cuda_archs", "90")
    objects = []
    for src in ctx.files.srcs:
        obj = ctx.actions.declare_file("_objs/%s/%s.pic.o" % (ctx.label.name, src.basename[:-len(src.extension) - 1]))
        args = ctx.actions.args()
        args.add("-ccbin=" + cc_toolchain.compiler_executable)
        args.add_all(_NVCC_FLAGS + _gencode(archs) + include_flags + define_flags + ctx.attr.copts)
        args.add("-c", src.path)
        args.add("-o", obj.path)
        ctx.actions.run(
            executable = cuda_root + "/bin/nvcc",
            arguments = [args],
            inputs = depset(transitive = [inputs, cc_toolchain.all_files]),
            outputs = [obj],
            mnemonic = "NvccCompile",
            progress_message = "nvcc %s" % src.short_path,
            use_default_shell_env = True,
        )
        objects.append(obj)
    return [DefaultInfo(files = depset(objects))]

_cuda_objects = rule(
    implementation = _cuda_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu"]),
        "hdrs": attr.label_list(allow_files = [".h", ".cuh"]),
        "deps": attr.label_list(providers = [CcInfo]),
        "copts": attr.string_list(),
        "_cc_toolchain": attr.label(default = Label("@bazel_tools//tools/cpp:current_cc_toolchain")),
    },
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    fragments = ["cpp"],
)

def cuda_library(name, srcs, hdrs = [], deps = [], copts = [], visibility = None, **kwargs):
    """An alwayslink cc_library of nvcc-compiled `srcs` (.cu) with `hdrs` and `deps`."""
    deps = deps + ["@local_cuda//:cuda_runtime"]
    compatible = [] if nvcc_available else ["@local_cuda//:unavailable"]
    _cuda_objects(
        name = name + "_objects",
        srcs = srcs,
        hdrs = hdrs,
        deps = deps,
        copts = copts,
        target_compatible_with = compatible,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = [":" + name + "_objects"],
        hdrs = hdrs,
        deps = deps,
        alwayslink = True,
        target_compatible_with = compatible,
        visibility = visibility,
        **kwargs
    )
