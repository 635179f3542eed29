"""cuda_configure: finds the local CUDA toolkit and NCCL at fetch time (offline).

Registered in WORKSPACE as @local_cuda. Generates:
  @local_cuda//:cuda_runtime  cudart headers (the toolkit's include/, symlinked into the
                              repository so they resolve inside Bazel's sandbox) and
                              -lcudart with an rpath to the toolkit's library folder
  @local_cuda//:nccl          nccl.h and -lnccl (depends on :cuda_runtime)
  @local_cuda//:cublas        -lcublasLt (depends on :cuda_runtime)
  @local_cuda//:defs.bzl      cuda_available, nccl_available, nvcc_available, cuda_root,
                              cuda_version, nccl_version, cuda_note, if_cuda(a, b = []),
                              if_nccl(a, b = []), if_nvcc(a, b = [])
Where no toolkit (or no NCCL) is found the targets still exist but are incompatible with
every platform (target_compatible_with = [":unavailable"], a constraint value no platform
has), and cuda_available / nccl_available = False. So every BUILD file that loads defs.bzl
or names the targets loads on any machine; a target that depends on a missing one is
incompatible too: skipped by wildcard builds and tests (`bazel build //...`), and an error
that names the missing constraint when requested by name. Use if_cuda / if_nccl to choose
sources for a target that must build either way.

Where it looks (build-time environment, not a run-time knob):
  CUDA_PATH  when set, the toolkit root, and the only place looked at (so
             CUDA_PATH=/nonexistent builds as a machine without CUDA); else /usr/local/cuda.
             A toolkit is <root>/include/cuda_runtime_api.h + libcudart.so in <root>/lib64
             or <root>/lib (host code needs no more); nvcc_available says whether
             <root>/bin/nvcc is there too (cuda_library in cuda.bzl compiles .cu with it).
  NCCL_PATH  when set, the NCCL root (include/nccl.h, lib64/ or lib/libnccl.so); else NCCL
             is looked for in the toolkit itself, then in /usr/include + /usr/lib/<multiarch>
             (Debian's libnccl-dev).
The variables are read from the client environment or --repo_env / --action_env; a
change of either re-runs the rule (so does every Bazel server start: the rule is local).
After installing or removing a toolkit, run `bazel sync --configure` to look again.
"""

_DEFAULT_CUDA = "/usr/local/cuda"
_SYSTEM_LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]

def _first_lib_dir(repository_ctx, root, lib):
    for sub in ["lib64", "lib"]:
        if repository_ctx.path(root + "/" + sub + "/" + lib).exists:
            return root + "/" + sub
    return None

def _find_cuda(repository_ctx):
    """Returns (root, lib_dir, note); root is None when there is no usable toolkit."""
    env_root = repository_ctx.os.environ.get("CUDA_PATH", "")
    root = env_root.rstrip("/") if env_root else _DEFAULT_CUDA
    origin = "CUDA_PATH=" + env_root if env_root else "the default " + _DEFAULT_CUDA
    if not repository_ctx.path(root + "/include/cuda_runtime_api.h").exists:
        return None, None, "no CUDA toolkit: %s/include/cuda_runtime_api.h is missing (looked in %s)" % (root, origin)
    lib_dir = _first_lib_dir(repository_ctx, root, "libcudart.so")
    if not lib_dir:
        return None, None, "no CUDA toolkit: libcudart.so is in neither %s/lib64 nor %s/lib" % (root, root)
    return root, lib_dir, "from %s (%s)" % (root, origin)

def _find_nccl(repository_ctx, cuda_root, cuda_lib_dir):
    """Returns (include_dir, lib_dir, note); include_dir is None when NCCL is missing."""
    env_root = repository_ctx.os.environ.get("NCCL_PATH", "")
    if env_root:
        root = env_root.rstrip("/")
        lib_dir = _first_lib_dir(repository_ctx, root, "libnccl.so")
        if repository_ctx.path(root + "/include/nccl.h").exists and lib_dir:
            return root + "/include", lib_dir, "from NCCL_PATH=" + env_root
        return None, None, "no NCCL in NCCL_PATH=%s (needs include/nccl.h and lib64/ or lib/libnccl.so)" % env_root
    if (repository_ctx.path(cuda_root + "/include/nccl.h").exists and
        repository_ctx.path(cuda_lib_dir + "/libnccl.so").exists):
        return cuda_root + "/include", cuda_lib_dir, "from the CUDA toolkit"
    if repository_ctx.path("/usr/include/nccl.h").exists:
        for lib_dir in _SYSTEM_LIB_DIRS:
            if repository_ctx.path(lib_dir + "/libnccl.so").exists:
                return "/usr/include", lib_dir, "from the system (/usr/include, %s)" % lib_dir
    return None, None, "no NCCL (nccl.h + libnccl.so) in %s, /usr/include or NCCL_PATH" % cuda_root

def _cuda_version(repository_ctx, root):
    """"13.0" from CUDART_VERSION (13000) in cuda_runtime_api.h; "unknown" if absent."""
    for line in repository_ctx.read(root + "/include/cuda_runtime_api.h").splitlines():
        words = [w for w in line.replace("\t", " ").split(" ") if w]
        if len(words) == 3 and words[0] == "#define" and words[1] == "CUDART_VERSION" and words[2].isdigit():
            code = int(words[2])
            return "%d.%d" % (code // 1000, (code % 1000) // 10)
    return "unknown"

def _nccl_version(repository_ctx, header):
    parts = {}
    for line in repository_ctx.read(header).splitlines():
        words = [w for w in line.replace("\t", " ").split(" ") if w]
        if len(words) == 3 and words[0] == "#define" and words[1] in ["NCCL_MAJOR", "NCCL_MINOR", "NCCL_PATCH"]:
            parts[words[1]] = words[2]
    if len(parts) != 3:
        return "unknown"
    return "%s.%s.%s" % (parts["NCCL_MAJOR"], parts["NCCL_MINOR"], parts["NCCL_PATCH"])

def _linkopts(lib_dir, lib):
    return [
        "-L" + lib_dir,
        "-Wl,-rpath," + lib_dir,
        "-l" + lib,
    ]

_DEFS = '''"""Generated by //third_party/cuda:cuda_configure.bzl: what @local_cuda found."""

cuda_available = {cuda_available}
nccl_available = {nccl_available}
nvcc_available = {nvcc_available}
cuda_root = "{cuda_root}"
cuda_version = "{cuda_version}"
nccl_version = "{nccl_version}"
cuda_note = "{note}"

def if_cuda(a, b = []):
    """`a` when the CUDA toolkit was found, else `b`."""
    return a if cuda_available else b

def if_nvcc(a, b = []):
    """`a` when the toolkit and its nvcc were found (so cuda_library targets build), else `b`."""
    return a if nvcc_available else b

def if_nccl(a, b = []):
    """`a` when CUDA and NCCL were both found, else `b`."""
    return a if nccl_available else b
'''

def _cuda_configure_impl(repository_ctx):
    cuda_root, cuda_lib_dir, cuda_note = _find_cuda(repository_ctx)
    nccl_include, nccl_lib_dir, nccl_note = None, None, "no NCCL without CUDA"
    cuda_version, nccl_version = "", ""
    build = [
        "# Generated by //third_party/cuda:cuda_configure.bzl. Do not edit.",
        'package(default_visibility = ["//visibility:public"])',
        "",
        "# A constraint value no platform has: what is missing is incompatible with every one.",
        'constraint_setting(name = "found")',
        "",
        'constraint_value(name = "unavailable", constraint_setting = ":found")',
        "",
    ]
    missing = 'cc_library(name = "%s", target_compatible_with = [":unavailable"])\n'
    if cuda_root:
        cuda_version = _cuda_version(repository_ctx, cuda_root)
        repository_ctx.symlink(cuda_root + "/include", "cuda/include")
        build.append("""cc_library(
    name = "cuda_runtime",
    hdrs = glob(["cuda/include/**"]),
    includes = ["cuda/include"],
    linkopts = {linkopts},
)
""".format(linkopts = repr(_linkopts(cuda_lib_dir, "cudart"))))
        if repository_ctx.path(cuda_lib_dir + "/libcublasLt.so").exists:
            build.append("""cc_library(
    name = "cublas",
    linkopts = {linkopts},
    deps = [":cuda_runtime"],
)
""".format(linkopts = repr(_linkopts(cuda_lib_dir, "cublasLt"))))
        else:
            build.append(missing % "cublas")
        nccl_include, nccl_lib_dir, nccl_note = _find_nccl(repository_ctx, cuda_root, cuda_lib_dir)
    else:
        build.append(missing % "cuda_runtime")
        build.append(missing % "cublas")

    if nccl_include:
        nccl_version = _nccl_version(repository_ctx, nccl_include + "/nccl.h")
        hdrs, includes = [], []
        if nccl_include != cuda_root + "/include":
            # Only the header: a whole /usr/include would shadow the toolchain's own.
            repository_ctx.symlink(nccl_include + "/nccl.h", "nccl/include/nccl.h")
            hdrs, includes = ["nccl/include/nccl.h"], ["nccl/include"]
        build.append("""cc_library(
    name = "nccl",
    hdrs = {hdrs},
    includes = {includes},
    linkopts = {linkopts},
    deps = [":cuda_runtime"],
)
""".format(hdrs = repr(hdrs), includes = repr(includes), linkopts = repr(_linkopts(nccl_lib_dir, "nccl"))))
    else:
        build.append(missing % "nccl")

    note = cuda_note
    if cuda_root:
        note = "CUDA %s %s; " % (cuda_version, cuda_note)
        note += "NCCL %s %s" % (nccl_version, nccl_note) if nccl_include else nccl_note
    build.insert(1, "# " + note)
    repository_ctx.file("BUILD.bazel", "\n".join(build))
    repository_ctx.file("defs.bzl", _DEFS.format(
        cuda_available = "True" if cuda_root else "False",
        nccl_available = "True" if nccl_include else "False",
        nvcc_available = "True" if cuda_root and repository_ctx.path(cuda_root + "/bin/nvcc").exists else "False",
        cuda_root = cuda_root or "",
        cuda_version = cuda_version,
        nccl_version = nccl_version,
        note = note.replace("\\", "\\\\").replace('"', '\\"'),
    ))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_PATH", "NCCL_PATH"],
    configure = True,
    local = True,
    doc = "Detects the local CUDA toolkit and NCCL; see the file's docstring.",
)
