#!/usr/bin/env bash
# tools/bundle.sh without Bazel (--from the runfiles): packs the binaries, the CUDA plugin
# and one gpu test, then the script's own verification extracts the tarball elsewhere and
# runs it with an empty environment (ldd, RUNPATHs, the plugin loaded from the bundle's
# lib/, the test failing only its device case, a two-step CPU job). This test then checks
# the layout: what must be in it and what must never be (CUDA's and the base system's
# libraries). The full bundle (every gpu test, the corpus) is `tools/bundle.sh`.
set -euo pipefail

export TMPDIR="${TEST_TMPDIR:-$(mktemp -d)}"
out="$TMPDIR/colossal-bundle.tar.gz"
tools/bundle.sh --from "$PWD" --test kernels/gelu/gelu_cuda_test "$out"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
listing="$(tar -tzf "$out")"
for want in colossal/bin/colossal colossal/bin/colossald colossal/bin/colossal-worker \
    colossal/lib/libcolossal_cuda.so colossal/tests/gelu_cuda_test colossal/configs/gpt-kjv.yaml \
    colossal/README colossal/MANIFEST colossal/lib/libprotobuf.so.32 colossal/lib/libdnnl.so.2 \
    colossal/lib/libucs.so.0 colossal/lib/ucx/libuct_cma.so.0; do
  grep -qx "$want" <<<"$listing" || fail "$want is not in the bundle"
done
for never in libcudart libcublas libnccl libcuda.so 'libc\.so' libstdc++ libgcc_s ld-linux libpthread; do
  ! grep -q "/$never" <<<"$listing" || fail "the bundle holds $(grep "/$never" <<<"$listing" | head -1)"
done
[ "$failures" = 0 ] || exit 1
echo "PASS: $(stat -c %s "$out") bytes, $(wc -l <<<"$listing") entries"
