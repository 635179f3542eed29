"""cuda_library: compiles .cu sources with the toolkit's nvcc into an alwayslink cc_library;
cuda_plugin: links cuda_library objects into one shared library the binaries dlopen.

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

A .cc among the srcs is host code of the CUDA backend (it calls the runtime, launches
nothing) and is compiled the same way, so a plugin holds it too.

    cuda_plugin(name = "libcolossal_cuda.so", libs = ["//kernels/gelu:gelu_cuda", ...])

links the objects of the listed cuda_library targets, and nothing they depend on, into
one shared library against @local_cuda's libraries (`deps`). What the objects call in the
rest of the program (the dispatch tables, the registries) stays undefined in the plugin
and binds, at dlopen, to the executable's own definitions: an executable that loads it
links with -rdynamic. So the program starts without CUDA's libraries (hundreds of MB of
cuBLASLt mapped and relocated at every start otherwise) and takes the CUDA twins only when
a job or command asks for them (kernels/common/cuda_plugin.h).

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
        if src.extension == "cc":
            args.add("-x", "c++")
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
        "srcs": attr.label_list(allow_files = [".cu", ".cc"]),
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
        visibility = ["//visibility:public"],  # for cuda_plugin
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

def _cuda_plugin_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    objects = depset(transitive = [t.files for t in ctx.attr.objects]).to_list()
    link_flags = []
    for dep in ctx.attr.deps:
        for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
            link_flags.extend(linker_input.user_link_flags)
    out = ctx.actions.declare_file(ctx.label.name)
    args = ctx.actions.args()
    args.add("-shared")
    args.add("-Wl,-soname," + out.basename)
    args.add("-o", out.path)
    args.add_all(objects)
    args.add_all(link_flags)
    args.add_all(["-lstdc++", "-lm"])
    ctx.actions.run(
        executable = cc_toolchain.compiler_executable,
        arguments = [args],
        inputs = depset(objects, transitive = [cc_toolchain.all_files]),
        outputs = [out],
        mnemonic = "CudaPluginLink",
        progress_message = "linking CUDA plugin %s" % out.short_path,
        use_default_shell_env = True,
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_cuda_plugin = rule(
    implementation = _cuda_plugin_impl,
    attrs = {
        "objects": attr.label_list(),
        "deps": attr.label_list(providers = [CcInfo]),
        "_cc_toolchain": attr.label(default = Label("@bazel_tools//tools/cpp:current_cc_toolchain")),
    },
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    fragments = ["cpp"],
)

def cuda_plugin(name, libs, deps = [], visibility = None):
    """The shared library `name` holding the objects of the cuda_library targets `libs`."""
    _cuda_plugin(
        name = name,
        objects = [lib + "_objects" for lib in libs],
        deps = deps + ["@local_cuda//:cuda_runtime"],
        target_compatible_with = [] if nvcc_available else ["@local_cuda//:unavailable"],
        visibility = visibility,
    )
