#!/usr/bin/env bash
# tools/bundle.sh [--no-verify] [OUT.tar.gz]: builds colossal and writes a relocatable
# bundle for GPU nodes that have the CUDA driver and toolkit libraries but none of this
# build's Debian -dev packages (default OUT: bazel-bin/colossal-bundle.tar.gz).
#
#   colossal/bin/        colossal, colossald, colossal-worker (stripped; .dynsym kept: the
#                        plugin binds to colossal's and colossal-worker's -rdynamic symbols)
#   colossal/lib/        libcolossal_cuda.so (the CUDA plugin, found by the binaries as
#                        ../lib/libcolossal_cuda.so), every non-system shared library the
#                        binaries, the plugin and the tests need (abseil, gRPC, protobuf,
#                        yaml-cpp, spdlog, fmt, UCX, oneDNN, OpenSSL, ..., and the Bazel
#                        _solib_k8 libraries the dynamically linked tests use), lib/ucx/ the
#                        UCX transport modules
#   colossal/tests/      every cc_test tagged "gpu", runnable with no Bazel runfiles (they
#                        fail only "a CUDA device is present" on a machine without a GPU)
#   colossal/bench/      the GPU benchmarks (tools/gpu/cuda_kernel_bench)
#   colossal/gpu/        check.sh, the one GPU check (tools/gpu/check.sh), gpt_gpu_bench.sh and
#                        the PyTorch peers; colossal/reference/gpt_torch.py, PyTorch's GPT
#   colossal/configs/    configs/*.yaml;  colossal/data/kjv.txt the default job's corpus
#                        (when data/kjv.txt exists here; 4.4 MB, 1.4 MB compressed)
#   colossal/README      how to run it and what the node must have; MANIFEST the file list
#
# Every ELF file finds its libraries through RUNPATH: $ORIGIN/../lib for bin/ and tests/,
# $ORIGIN for lib/, $ORIGIN:$ORIGIN/.. for lib/ucx/ (set with patchelf). Not copied: the base
# system (glibc: libc, libm, libpthread, libdl, librt, ld-linux, ...; libstdc++, libgcc_s)
# and CUDA (libcudart, libcublas, libcublasLt, libnccl, libcuda, ...), which the node
# provides: the plugin loads cudart and cuBLASLt from the linker's path, $CUDA_PATH or
# /usr/local/cuda (kernels/common/cuda_plugin.h); the plugin and the tests also keep
# /usr/local/cuda/lib64 after $ORIGIN in their RUNPATH. rdma-core (libibverbs, librdmacm,
# providers) is the node's too: UCX's InfiniBand modules load only where it is installed.
# The README written into the bundle names the glibc and libstdc++ versions it needs.
#
# Unless --no-verify, the tarball is then extracted into a fresh temporary folder and
# checked with an empty environment (env -i PATH=/usr/bin:/bin): ldd of every ELF file,
# RUNPATHs, `colossal --help`, `colossal kernels` loading the bundle's plugin, every gpu
# test started (each fails only the device case here), a two-step CPU training job, and
# (as root, with unshare) the same ldd and `colossal kernels` with CUDA's folders hidden;
# bench/cuda_kernel_bench and gpu/check.sh start and say that no device is present.
#
# Needs: nvcc (the bundle is for GPU nodes, so the build must have the CUDA backend),
# patchelf (tools/setup.sh installs it), binutils. The tarball must stay under 40 MB.
#
# --from DIR --test PATH...: skip Bazel and take the built files from DIR (a bazel-bin or
# a runfiles tree: DIR/colossal, DIR/colossald, DIR/colossal-worker,
# DIR/libcolossal_cuda.so, DIR/PATH for each --test); tools/bundle_test.sh uses it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MAX_BYTES=$((40 * 1000 * 1000))
CUDA_ROOT="${CUDA_PATH:-/usr/local/cuda}"
CUDA_FALLBACK="/usr/local/cuda/lib64"
E=(env -i PATH=/usr/bin:/bin)

out=""
from=""
verify=1
tests=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-verify) verify=0 ;;
    --from) from="$2"; shift ;;
    --test) tests+=("$2"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bundle: unknown flag $1 (usage: tools/bundle.sh [--no-verify] [OUT.tar.gz])" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done

die() { echo "bundle: error: $*" >&2; exit 1; }
say() { echo "bundle: $*"; }

for tool in patchelf strip objdump readelf nm ldd tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (tools/setup.sh installs patchelf; binutils has the rest)"
done

# --- build ---------------------------------------------------------------------------
if [ -z "$from" ]; then
  [ -x "$CUDA_ROOT/bin/nvcc" ] || die "no nvcc at $CUDA_ROOT/bin/nvcc: the bundle is for GPU nodes and needs the CUDA plugin (set CUDA_PATH)"
  cd "$ROOT"
  mapfile -t test_labels < <(bazel query 'attr(tags, "\bgpu\b", tests(//...))' 2>/dev/null | sort)
  [ ${#test_labels[@]} -gt 0 ] || die "bazel query found no gpu-tagged tests"
  say "building the binaries, the plugin and ${#test_labels[@]} gpu tests"
  # The default flags, so the build shares every output with the usual one. The tests stay
  # dynamically linked to their _solib_k8 libraries, which go into lib/ (a few MB): a
  # --dynamic_mode=off build would relink them over the same bazel-bin paths.
  bazel build //:colossal //:colossald //:colossal-worker //:libcolossal_cuda.so //tools/gpu:cuda_kernel_bench \
    "${test_labels[@]}"
  from="$(bazel info bazel-bin 2>/dev/null)"
  tests=()
  for label in "${test_labels[@]}"; do
    label="${label#//}"
    tests+=("${label/://}")
  done
  [ -n "$out" ] || out="$ROOT/bazel-bin/colossal-bundle.tar.gz"
fi
[ -n "$out" ] || die "give OUT.tar.gz with --from"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
from="$(cd "$from" && pwd)"

# --- assemble -------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/colossal-bundle.XXXXXX")"
trap 'rm -rf "$work"' EXIT
B="$work/stage/colossal"
mkdir -p "$B/bin" "$B/lib" "$B/tests" "$B/configs" "$B/bench" "$B/gpu"

is_system() {
  case "$1" in
    linux-vdso.so.*|ld-linux*.so.*|libc.so.*|libm.so.*|libmvec.so.*|libpthread.so.*|libdl.so.*|\
    librt.so.*|libresolv.so.*|libutil.so.*|libanl.so.*|libnsl.so.*|libstdc++.so.*|libgcc_s.so.*) return 0 ;;
  esac
  return 1
}
is_cuda() {
  case "$1" in
    libcuda.so.*|libcudart.so.*|libcublas.so.*|libcublasLt.so.*|libnccl.so.*|libnvrtc*|libnvJitLink*|\
    libcudnn*|libcufft*|libcurand*|libcusparse*|libcusolver*|libnvidia-*) return 0 ;;
  esac
  return 1
}
is_rdma() {  # the node's rdma-core, needed only by UCX's InfiniBand modules
  case "$1" in
    libibverbs.so.*|librdmacm.so.*|libmlx4.so.*|libmlx5.so.*|libefa.so.*|libnl-3.so.*|libnl-route-3.so.*) return 0 ;;
  esac
  return 1
}

declare -A copied=()  # soname -> source path
ucx_dir="/nonexistent"   # the UCX modules' folder (its files go to lib/ucx/, not lib/)
# bundle_deps FILE: copies every library FILE needs (ldd's closure) into lib/.
bundle_deps() {
  local name arrow path rest
  while read -r name arrow path rest; do
    [ "$arrow" = "=>" ] || continue
    if is_system "$name" || is_cuda "$name" || is_rdma "$name"; then continue; fi
    [ "$path" != "not" ] || die "$1 needs $name, which this machine cannot find"
    path="$(readlink -f "$path")"
    case "$path" in "$ucx_dir"/*) continue ;; esac
    if [ -n "${copied[$name]:-}" ]; then
      [ "${copied[$name]}" = "$path" ] || cmp -s "${copied[$name]}" "$path" ||
        die "two different $name: ${copied[$name]} and $path"
      continue
    fi
    copied[$name]="$path"
    install -m 0644 "$path" "$B/lib/$name"
  done < <("${E[@]}" ldd "$1")
}

for bin in colossal colossald colossal-worker; do
  [ -f "$from/$bin" ] || die "$from/$bin is missing"
  src="$(readlink -f "$from/$bin")"
  install -m 0755 "$src" "$B/bin/$bin"
  bundle_deps "$src"
done
plugin="$(readlink -f "$from/libcolossal_cuda.so")" || true
[ -f "$plugin" ] || die "$from/libcolossal_cuda.so is missing (a build without nvcc has no CUDA plugin)"
install -m 0755 "$plugin" "$B/lib/libcolossal_cuda.so"
bundle_deps "$plugin"
for t in "${tests[@]}"; do
  src="$(readlink -f "$from/$t")"
  [ -f "$src" ] || die "test binary $from/$t is missing"
  [ ! -e "$B/tests/$(basename "$t")" ] || die "two gpu tests named $(basename "$t")"
  install -m 0755 "$src" "$B/tests/$(basename "$t")"
  bundle_deps "$src"  # from where it was built, so ldd follows its _solib_k8 RUNPATH
done

bench="$(readlink -f "$from/tools/gpu/cuda_kernel_bench")" || true
[ -f "$bench" ] || die "$from/tools/gpu/cuda_kernel_bench is missing"
install -m 0755 "$bench" "$B/bench/cuda_kernel_bench"
bundle_deps "$bench"
install -m 0755 "$ROOT/tools/gpu/check.sh" "$B/gpu/check.sh"
install -m 0644 "$ROOT/tools/gpu/torch_kernel_bench.py" "$B/gpu/torch_kernel_bench.py"
install -m 0755 "$ROOT/tools/gpu/gpt_gpu_bench.sh" "$B/gpu/gpt_gpu_bench.sh"
install -m 0644 "$ROOT/tools/bench/torch_gpt_bench.py" "$B/gpu/torch_gpt_bench.py"
mkdir -p "$B/reference"
install -m 0644 "$ROOT/tools/reference/gpt_torch.py" "$B/reference/gpt_torch.py"

# UCX loads its transports (cma, ib, rdmacm) from the folder ucx/ beside libucs.
if [ -n "${copied[libucs.so.0]:-}" ]; then
  ucx_dir="$(readlink -f "$(dirname "${copied[libucs.so.0]}")/ucx")"
  mkdir -p "$B/lib/ucx"
  for m in "$ucx_dir"/lib*.so.0; do
    [ -e "$m" ] || continue
    install -m 0644 "$(readlink -f "$m")" "$B/lib/ucx/$(basename "$m")"
    bundle_deps "$m"
  done
fi

cp "$ROOT"/configs/*.yaml "$B/configs/"
if [ -s "$ROOT/data/kjv.txt" ]; then
  mkdir -p "$B/data"
  cp "$ROOT/data/kjv.txt" "$B/data/kjv.txt"
fi

# --- strip and set RUNPATHs -------------------------------------------------------------
mapfile -t elves < <(find "$B/bin" "$B/lib" "$B/tests" "$B/bench" -type f | sort)
for f in "${elves[@]}"; do
  # Only what still has a static symbol table (Bazel's outputs; Debian's are stripped).
  # --strip-unneeded keeps .dynsym, which -rdynamic filled with what the plugin binds to.
  if [[ "$(readelf -S -W "$f")" == *" .symtab "* ]]; then strip --strip-unneeded "$f"; fi
  case "$f" in
    "$B"/bin/*) rpath='$ORIGIN/../lib' ;;
    "$B"/tests/*|"$B"/bench/*) rpath="\$ORIGIN/../lib:$CUDA_FALLBACK" ;;
    "$B"/lib/libcolossal_cuda.so) rpath="\$ORIGIN:$CUDA_FALLBACK" ;;
    "$B"/lib/ucx/*) rpath='$ORIGIN:$ORIGIN/..' ;;  # modules link each other (rdmacm: ib)
    *) rpath='$ORIGIN' ;;
  esac
  patchelf --set-rpath "$rpath" "$f"
done

# The plugin's undefined symbols must be in colossal's and colossal-worker's .dynsym
# (after stripping) or in the libraries in their global scope (what they link, CUDA's).
undefined_plugin_symbols() {
  local provided
  provided="$(
    nm -D --defined-only "$1"
    "${E[@]}" ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
      nm -D --defined-only "$lib"
    done
    for lib in "$CUDA_ROOT"/lib64/libcudart.so.* "$CUDA_ROOT"/lib64/libcublasLt.so.*; do
      [ ! -e "$lib" ] || nm -D --defined-only "$lib"
    done
  )"
  comm -23 <(nm -D --undefined-only "$B/lib/libcolossal_cuda.so" | awk '$1 == "U" {sub(/@.*/, "", $2); print $2}' | sort -u) \
           <(awk '{sub(/@.*/, "", $3); print $3}' <<<"$provided" | sort -u)
}
if compgen -G "$CUDA_ROOT/lib64/libcudart.so.*" >/dev/null; then
  missing="$(undefined_plugin_symbols "$B/bin/colossal")"
  [ -z "$missing" ] || die "bin/colossal does not export what the plugin needs: $(head -5 <<<"$missing" | tr '\n' ' ')"
  say "every symbol the plugin needs is in bin/colossal's global scope (its .dynsym and libraries)"
  # The worker loads it for resources.device: cuda jobs (runtime/worker/device_setup.h).
  missing="$(undefined_plugin_symbols "$B/bin/colossal-worker")"
  [ -z "$missing" ] || die "bin/colossal-worker does not export what the plugin needs: $(head -5 <<<"$missing" | c++filt | tr '\n' ' ')"
  say "every symbol the plugin needs is in bin/colossal-worker's global scope"
fi

# --- the node's glibc and libstdc++ -------------------------------------------------------
max_version() { objdump -T "${elves[@]}" 2>/dev/null | grep -o "$1[0-9.]*[0-9]" | sort -uV | tail -1; }
glibc="$(max_version 'GLIBC_')"
glibcxx="$(max_version 'GLIBCXX_')"
cxxabi="$(max_version 'CXXABI_')"
case "$glibcxx" in
  GLIBCXX_3.4.28) gcc="GCC 10" ;; GLIBCXX_3.4.29) gcc="GCC 11" ;; GLIBCXX_3.4.30) gcc="GCC 12" ;;
  GLIBCXX_3.4.31) gcc="GCC 13.1" ;; GLIBCXX_3.4.32) gcc="GCC 13.2" ;; GLIBCXX_3.4.33) gcc="GCC 14" ;;
  *) gcc="the GCC that provides it" ;;
esac
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
corpus_line="data/kjv.txt is the default job's corpus (the King James Bible, made by tools/setup.sh)."
[ -e "$B/data/kjv.txt" ] || corpus_line="No corpus is included: give the job's data.train (--set data.train=FILE)."

cat > "$B/README" <<EOF
colossal, built from commit $commit on $(date -u +%Y-%m-%d) by tools/bundle.sh.

Run from this folder (job paths such as data.train are relative to the current directory):
  bin/colossal kernels                      # the kernels; "cuda backend: .../lib/libcolossal_cuda.so"
  bin/colossal run configs/gpt-kjv.yaml     # the default job, on the CPU
  bin/colossal --help; bin/colossald --help # the CLI; coordinator and node daemon
  tests/<name>_cuda_test                    # a gpu test (Catch2); each fails where no GPU is visible
  gpu/check.sh                              # the GPU check: every gpu test, kernel rates beside PyTorch
$corpus_line

The node needs: x86-64-v3 (AVX2, FMA), Linux with glibc >= ${glibc#GLIBC_} ($glibc) and the
libstdc++ of $gcc or newer ($glibcxx, $cxxabi), and for the GPU the NVIDIA driver (libcuda)
and CUDA $(basename "$(readlink -f "$CUDA_ROOT")" | sed 's/^cuda-//') runtime libraries (libcudart, libcublasLt, libnccl) on the dynamic
linker's path, in \$CUDA_PATH/lib64 or /usr/local/cuda/lib64. InfiniBand for UCX needs the
node's rdma-core (libibverbs, librdmacm). Everything else is in lib/, found through RUNPATH
(\$ORIGIN); do not point LD_LIBRARY_PATH at other builds of those libraries.
EOF
(cd "$work/stage" && find colossal -type f ! -path colossal/MANIFEST | sort | while read -r f; do
  printf '%10d  %s\n' "$(stat -c %s "$f")" "$f"; done) > "$B/MANIFEST"

# --- pack ---------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tar -C "$work/stage" --owner=0 --group=0 --numeric-owner --sort=name -cf - colossal | gzip -9 > "$out.tmp"
mv "$out.tmp" "$out"
size="$(stat -c %s "$out")"
say "contents (uncompressed bytes):"
sed 's/^/  /' "$B/MANIFEST"
say "wrote $out: $size bytes ($(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1e6}') MB), needs $glibc, $glibcxx"
[ "$size" -lt "$MAX_BYTES" ] || die "$out is $size bytes, over the 40 MB limit"

[ "$verify" = 1 ] || exit 0

# --- verify: extracted elsewhere, empty environment ------------------------------------------
X="$(mktemp -d "${TMPDIR:-/tmp}/colossal-bundle-check.XXXXXX")"
trap 'rm -rf "$work" "$X"' EXIT
X="$(cd "$X" && pwd -P)"
tar -C "$X" -xzf "$out"
V="$X/colossal"
failures=0
fail() { echo "bundle: FAIL: $*" >&2; failures=$((failures + 1)); }
say "verifying in $V with env -i PATH=/usr/bin:/bin"

mapfile -t elves < <(find "$V/bin" "$V/lib" "$V/tests" "$V/bench" -type f | sort)
# ldd_unresolved FILE: the sonames FILE cannot find that are not CUDA's or rdma-core's.
ldd_unresolved() {
  "${E[@]}" ldd "$1" 2>&1 | awk '/not found/ {print $1}' | while read -r n; do
    is_cuda "$n" || is_rdma "$n" || echo "$n"
  done
}
for f in "${elves[@]}"; do
  deps="$("${E[@]}" ldd "$f" 2>&1)"
  bad="$(ldd_unresolved "$f")"
  [ -z "$bad" ] || fail "ldd ${f#$X/}: not found: $bad"
  case "$f" in "$V"/bin/*|"$V"/tests/*|"$V"/bench/*)
    [[ "$deps" == *"=> $V/"* ]] || fail "ldd ${f#$X/} resolves nothing from the bundle's lib/" ;;
  esac
  rp="$(patchelf --print-rpath "$f")"
  case "$rp" in '$ORIGIN'*) ;; *) fail "${f#$X/} has RUNPATH '$rp'" ;; esac
done
say "ldd: ${#elves[@]} ELF files, nothing missing but CUDA's libraries; every RUNPATH starts with \$ORIGIN"

"${E[@]}" "$V/bin/colossal" --help > "$X/help.txt" 2>&1 || fail "bin/colossal --help: $(cat "$X/help.txt")"
"${E[@]}" "$V/bin/colossald" --help > "$X/dhelp.txt" 2>&1 || fail "bin/colossald --help: $(cat "$X/dhelp.txt")"
grep -q "usage: colossal " "$X/help.txt" || fail "bin/colossal --help printed no usage"
"${E[@]}" "$V/bin/colossal-worker" > "$X/whelp.txt" 2>&1 || true
grep -q "usage: colossal-worker" "$X/whelp.txt" || fail "bin/colossal-worker did not start: $(cat "$X/whelp.txt")"
"${E[@]}" "$V/bin/colossal" kernels > "$X/kernels.txt" 2>&1 || fail "bin/colossal kernels: $(cat "$X/kernels.txt")"
grep -q "^cuda backend: $V/lib/libcolossal_cuda.so" "$X/kernels.txt" ||
  fail "bin/colossal kernels did not load the bundle's plugin: $(head -3 "$X/kernels.txt")"
grep -q "^matmul " "$X/kernels.txt" || fail "bin/colossal kernels listed no matmul"
say "bin/colossal kernels: $(head -1 "$X/kernels.txt"); $(($(wc -l < "$X/kernels.txt") - 2)) kernels"

# Each gpu test starts; a kernel test runs its cases on the CPU twins and fails only the
# device case; the NCCL test (nothing runs without a device) lists its cases.
for t in "$V"/tests/*; do
  n="$(basename "$t")"
  if [[ "$n" == *nccl* ]]; then
    "${E[@]}" "$t" --list-tests > "$X/$n.txt" 2>&1 || true  # Catch2 2 exits with the count
    listed="$(grep -E '^[0-9]+ test cases?$' "$X/$n.txt" || true)"
    [ -n "$listed" ] || fail "tests/$n --list-tests: $(tail -3 "$X/$n.txt")"
    say "tests/$n starts and lists its cases: $listed"
    continue
  fi
  (cd "$X" && timeout 300 "${E[@]}" "$t" > "$X/$n.txt" 2>&1) && fail "tests/$n passed with no GPU"
  summary="$(grep -E '^test cases:' "$X/$n.txt" || true)"
  failed_cases="$(grep -c -E '^[^ ].* is present' "$X/$n.txt" || true)"
  if [[ "$summary" =~ \|\ 1\ failed ]] && [ "$failed_cases" -ge 1 ]; then
    say "tests/$n: $summary (the failure: a CUDA device is present)"
  else
    fail "tests/$n: ${summary:-no summary}: $(tail -5 "$X/$n.txt")"
  fi
done

"${E[@]}" "$V/bench/cuda_kernel_bench" > "$X/bench.txt" 2>&1 && fail "bench/cuda_kernel_bench ran with no GPU"
grep -q "no CUDA device" "$X/bench.txt" || fail "bench/cuda_kernel_bench did not start: $(tail -3 "$X/bench.txt")"
# The GPU check runs to its end and reports the missing device as failures (exit 1).
(cd "$X" && timeout 600 "${E[@]}" "$V/gpu/check.sh" --quick > "$X/check.txt" 2>&1) && fail "gpu/check.sh passed with no GPU"
grep -q "^== done" "$X/check.txt" || fail "gpu/check.sh did not finish: $(tail -5 "$X/check.txt")"
grep -q "gelu_forward *cpu *f32" "$X/check.txt" || fail "gpu/check.sh summed no twin report: $(grep -A3 'per kernel' "$X/check.txt")"
say "gpu/check.sh runs to its end here ($(grep -c '^FAIL' "$X/check.txt") failures where the device is missing)"

# A two-step CPU job end to end, run from an unrelated folder.
corpus="$V/data/kjv.txt"
if [ ! -s "$corpus" ]; then
  corpus="$X/corpus.txt"
  for i in $(seq 1 4000); do echo "In the beginning $i the word was with the bundle, and it was so."; done > "$corpus"
fi
mkdir -p "$X/job"
if (cd "$X/job" && timeout 300 "${E[@]}" "$V/bin/colossal" run "$V/configs/gpt-kjv.yaml" --set train.steps=2 \
      --set train.lr_schedule.warmup=1 --set "data.train=$corpus" --set sample.tokens=16 --set run_dir="$X/job/run" --no-checkpoints \
      > "$X/job.txt" 2>&1); then
  steps="$(grep -c '"loss"' "$X/job/run/metrics.jsonl" 2>/dev/null || true)"
  [ "$steps" = 2 ] || fail "the job wrote $steps steps to metrics.jsonl, want 2"
  say "bin/colossal run configs/gpt-kjv.yaml --set train.steps=2: $(grep '"loss"' "$X/job/run/metrics.jsonl" | tail -1 | cut -c1-120)"
else
  fail "bin/colossal run: $(tail -5 "$X/job.txt")"
fi

# With CUDA's folders hidden (a private mount namespace, root only): only CUDA's libraries
# are missing, and the binaries still start and say why the plugin did not load.
cuda_real="$(readlink -f "$CUDA_ROOT")"
if [ "$(id -u)" = 0 ] && [ -d "$cuda_real" ] && unshare -m true 2>/dev/null; then
  mkdir -p "$X/empty"
  # shellcheck disable=SC2016
  unshare -m bash -c '
    set -u
    mount --bind "$1" "$2" || exit 3
    V="$3"
    for f in $(find "$V/bin" "$V/lib" "$V/tests" -type f); do
      env -i PATH=/usr/bin:/bin ldd "$f" 2>&1 | awk -v f="${f#$V/}" "/not found/ {print f \": \" \$1}"
    done > "$4/nocuda-ldd.txt"
    env -i PATH=/usr/bin:/bin "$V/bin/colossal" kernels > "$4/nocuda-kernels.txt" 2>&1
  ' _ "$X/empty" "$cuda_real" "$V" "$X" || fail "the check with CUDA hidden could not run (rc $?)"
  if [ -s "$X/nocuda-kernels.txt" ]; then
    others="$(awk '{print $2}' "$X/nocuda-ldd.txt" | sort -u | while read -r n; do is_cuda "$n" || echo "$n"; done)"
    [ -z "$others" ] || fail "with CUDA hidden, ldd misses non-CUDA libraries: $others"
    grep -q "^matmul " "$X/nocuda-kernels.txt" || fail "with CUDA hidden, colossal kernels: $(head -3 "$X/nocuda-kernels.txt")"
    say "with $cuda_real hidden: missing only $(awk '{print $2}' "$X/nocuda-ldd.txt" | sort -u | tr '\n' ' ')(in $(cut -d: -f1 "$X/nocuda-ldd.txt" | sort -u | wc -l) files)"
    say "  colossal kernels: $(head -1 "$X/nocuda-kernels.txt" | cut -c1-160)"
  fi
else
  say "skipped the check with CUDA hidden (needs root and unshare)"
fi

[ "$failures" = 0 ] || die "$failures verification failures"
say "verified: the bundle runs from $V with an empty environment"
