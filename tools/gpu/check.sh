#!/usr/bin/env bash
# tools/gpu/check.sh [--quick] [--out DIR] [BUNDLE]: the one GPU check, run on a GPU node
# from the relocatable bundle (tools/bundle.sh), in one go, bounded to about 6 minutes.
# BUNDLE is an extracted bundle folder (the default when the script runs from one:
# colossal/gpu/check.sh) or a colossal-bundle.tar.gz, extracted into a temporary folder.
# It prints one summary, and with --out keeps every log in DIR:
#
#   1. the device (nvidia-smi), the bundle's commit, `colossal kernels` with the plugin
#      loaded on the device (every table must show a cuda twin);
#   2. every gpu test of the bundle (tests/*: each kernel family's harness run on its cuda
#      twin, the NCCL communicator on forked ranks), with COLOSSAL_TWIN_REPORT collecting
#      each compared output; per kernel and twin: cases, the largest |error| against the
#      double reference and the worst error over its tolerance (<= 1 passes);
#   3. tools/gpu/cuda_kernel_bench (every twin's TFLOP/s or GB/s and fraction of the
#      device's peak) beside tools/gpu/torch_kernel_bench.py (the node's PyTorch, same
#      workloads and timing) where python3 imports torch with CUDA;
#   4. the default job (configs/gpt-kjv.yaml, 500 steps) on the GPU in fp32 and bf16 and
#      on the node's CPU in fp32: validation losses, step time and gpu_mem_peak; the GPU's
#      fp32 validation loss must be within 0.02 of the CPU's;
#   5. GPT-2 124M and a 1.5B GPT training in bf16 at T 1024 on the GPU, colossal beside
#      PyTorch eager and torch.compile on the same GPU (gpt_gpu_bench.sh): step time,
#      tokens/s, MFU against the dense bf16 peak, peak memory, and the issue's goals.
#
# Exit status: 0 when every test passed and every table has a cuda twin; 1 otherwise.
#
# From a development machine with the device tool (build and bundle here, carry it there):
#   tools/bundle.sh && mkdir -p dist && cp bazel-bin/colossal-bundle.tar.gz dist/
#   run(command: "tools/gpu/check.sh --out $OUT dist/colossal-bundle.tar.gz", carry: ["dist"])
set -uo pipefail

quick=0
out=""
bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check: unknown flag $1" >&2; exit 2 ;;
    *) bundle="$1" ;;
  esac
  shift
done

start=$(date +%s)
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/colossal-gpu-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if [ -z "$bundle" ] && [ -x "$here/../bin/colossal" ]; then bundle="$(cd "$here/.." && pwd)"; fi
[ -n "$bundle" ] || { echo "check: give the bundle (a folder or colossal-bundle.tar.gz)" >&2; exit 2; }
if [ -f "$bundle" ]; then
  tar -C "$tmp" -xzf "$bundle" || { echo "check: cannot extract $bundle" >&2; exit 2; }
  bundle="$tmp/colossal"
fi
B="$(cd "$bundle" && pwd)"
[ -x "$B/bin/colossal" ] || { echo "check: $B has no bin/colossal" >&2; exit 2; }
L="${out:-$tmp/logs}"
mkdir -p "$L"
L="$(cd "$L" && pwd)"
# The script's own folder may be the repository's tools/gpu (bench scripts beside it) or
# the bundle's gpu/.
torch_bench="$here/torch_kernel_bench.py"
[ -f "$torch_bench" ] || torch_bench="$B/gpu/torch_kernel_bench.py"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
section() { echo; echo "== $* ($(($(date +%s) - start)) s)"; }

section "device and bundle"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/  /'
head -1 "$B/README" | sed 's/^/  /'
"$B/bin/colossal" kernels > "$L/kernels.txt" 2>&1
head -1 "$L/kernels.txt" | sed 's/^/  /'
grep -q "^cuda backend: .*libcolossal_cuda.so" "$L/kernels.txt" && ! grep -q "^cuda backend: .*(no CUDA device" "$L/kernels.txt" ||
  fail "colossal kernels: the plugin did not load on a device: $(head -1 "$L/kernels.txt")"
# Table rows: "<kernel> <ref> <cpu> <cuda>" with "-" for a missing twin.
missing="$(awk 'NR > 2 && NF >= 4 && $NF == "-" {print $1}' "$L/kernels.txt" | tr '\n' ' ')"
[ -z "$missing" ] || fail "kernels without a cuda twin: $missing"
echo "  $(awk 'NR > 2 && NF >= 4' "$L/kernels.txt" | wc -l) kernel tables; without a cuda twin: ${missing:-none}"

section "gpu tests"
report="$L/twins.tsv"
: > "$report"
for t in "$B"/tests/*; do
  n="$(basename "$t")"
  t0=$(date +%s)
  (cd "$tmp" && COLOSSAL_TWIN_REPORT="$report" timeout 240 "$t" > "$L/$n.txt" 2>&1)
  rc=$?
  summary="$(grep -E '^(All tests passed|test cases:)' "$L/$n.txt" | tail -1)"
  printf '  %-32s rc %-3d %4d s  %s\n' "$n" "$rc" "$(($(date +%s) - t0))" "$summary"
  [ "$rc" = 0 ] || { fail "tests/$n (rc $rc): $(grep -m3 -E 'FAILED|twin cuda|REQUIRE' "$L/$n.txt" | tr '\n' ' ')"; }
done
echo
echo "  per kernel and twin: compared outputs, max |error| vs the double reference, worst error / tolerance"
awk -F'\t' '{k = $1 " " $2 " " $3; n[k]++; if ($6 > e[k]) e[k] = $6; if ($7 > r[k]) r[k] = $7; if ($8 != 1) bad[k]++}
  END {for (k in n) printf "  %-44s %5d %12.3g %10.3g %s\n", k, n[k], e[k], r[k], bad[k] ? "FAIL " bad[k] : "ok"}' \
  "$report" | sort
grep -q $'\tcuda\t' "$report" || fail "no output of a cuda twin was compared (is the device visible?)"

section "kernel rates: colossal's cuda twins beside PyTorch on this GPU"
bench_flag=()
[ "$quick" = 1 ] && bench_flag=(--quick)
timeout 150 "$B/bench/cuda_kernel_bench" "${bench_flag[@]}" > "$L/cuda_kernel_bench.jsonl" 2> "$L/cuda_kernel_bench.err" ||
  fail "cuda_kernel_bench: $(tail -2 "$L/cuda_kernel_bench.err")"
torch_ok=0
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  timeout 150 python3 "$torch_bench" "${bench_flag[@]}" > "$L/torch_kernel_bench.jsonl" 2> "$L/torch_kernel_bench.err" &&
    torch_ok=1 || echo "  (PyTorch bench failed: $(tail -1 "$L/torch_kernel_bench.err"))"
else
  echo "  (no python3 with a CUDA PyTorch here: colossal's rates alone)"
fi
python3 - "$L/cuda_kernel_bench.jsonl" "$L/torch_kernel_bench.jsonl" "$torch_ok" <<'EOF'
import json, sys
def load(p):
    try:
        return [json.loads(l) for l in open(p) if l.strip().startswith("{")]
    except OSError:
        return []
ours, theirs, torch_ok = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3] == "1"
if ours and "device" in ours[0]:
    d = ours.pop(0)
    print("  %s, sm %s, %d SMs, %.0f GiB; peaks: bf16 %.0f TFLOP/s, fp32 %.1f TFLOP/s, HBM %.0f GB/s" % (
        d["device"], d["sm"], d["sms"], d["memory_gib"], d["bf16_tflops"], d["fp32_tflops"], d["hbm_gbps"]))
if theirs and "torch" in theirs[0]:
    print("  PyTorch %s" % theirs.pop(0)["torch"])
peer = {(r["kernel"], r["shape"]): r for r in theirs}
print("  %-20s %-32s %9s %10s %7s | %9s %10s | %6s" % ("kernel", "shape", "ms", "rate", "of peak", "torch ms", "rate", "ratio"))
for r in ours:
    unit = "TFLOP/s" if "tflops" in r else "GB/s"
    rate = r.get("tflops", r.get("gbps"))
    p = peer.get((r["kernel"], r["shape"]))
    prate = p.get("tflops", p.get("gbps")) if p else None
    print("  %-20s %-32s %9.3f %7.1f %-2s %7s | %9s %10s | %6s" % (
        r["kernel"], r["shape"], r["ms"], rate, unit[:2] if unit == "GB/s" else "TF",
        "%.2f" % r["of_peak"] if r.get("of_peak") is not None else "-",
        "%.3f" % p["ms"] if p else "-", "%.1f" % prate if p else "-",
        "%.2f" % (rate / prate) if p and prate else "-"))
print("  rate: TF = TFLOP/s, GB = GB/s; ratio = colossal's rate / PyTorch's (higher is better)")
EOF

section "the default job on the GPU beside the CPU"
# The default job (500 steps) on the GPU in fp32 and bf16, and on this node's CPU in fp32:
# the GPU's fp32 validation loss must be within 0.02 of the CPU's.
val_of() { grep '"val_loss"' "$1/metrics.jsonl" 2>/dev/null | tail -1 | sed 's/.*"val_loss": *\([0-9.]*\).*/\1/'; }
job_sets=()
# --quick: 30 steps (a first look; the 0.02 bound is for the full run).
[ "$quick" = 1 ] && job_sets=(--set train.steps=30 --set train.lr_schedule.warmup=5 --set train.val_every=30)
for run in cuda-fp32 cuda-bf16 cpu-fp32; do
  device="${run%%-*}"; precision="${run##*-}"
  t0=$(date +%s)
  if (cd "$B" && timeout 200 bin/colossal run configs/gpt-kjv.yaml --set resources.device="$device" \
        --set train.precision="$precision" --set run_dir="$tmp/run-$run" --set sample.tokens=0 "${job_sets[@]}" --no-checkpoints \
        > "$L/run-$run.txt" 2>&1); then
    last="$(grep '"step_ms"' "$tmp/run-$run/metrics.jsonl" | tail -1)"
    printf '  %-10s val_loss %s  %4d s  %s\n' "$run" "$(val_of "$tmp/run-$run")" "$(($(date +%s) - t0))" \
      "$(sed 's/.*"step_ms": *\([0-9.]*\).*/step_ms \1/' <<<"$last") $(grep -o '"gpu_mem_peak": *[0-9]*' <<<"$last")"
  else
    fail "the default job ($run): $(tail -1 "$L/run-$run.txt" | cut -c1-240)"
  fi
done
gpu_val="$(val_of "$tmp/run-cuda-fp32")"; cpu_val="$(val_of "$tmp/run-cpu-fp32")"
if [ -n "$gpu_val" ] && [ -n "$cpu_val" ]; then
  if awk -v g="$gpu_val" -v c="$cpu_val" 'BEGIN {d = g - c; if (d < 0) d = -d; exit !(d <= 0.02)}'; then
    echo "  GPU fp32 val_loss within 0.02 of the CPU's ($gpu_val vs $cpu_val)"
  else
    fail "GPU fp32 val_loss $gpu_val is not within 0.02 of the CPU's $cpu_val"
  fi
fi

section "GPT training on the GPU beside PyTorch (GPT-2 124M and 1.5B, bf16, T 1024)"
gpt_bench="$here/gpt_gpu_bench.sh"
[ -f "$gpt_bench" ] || gpt_bench="$B/gpu/gpt_gpu_bench.sh"
if nvidia-smi -L > /dev/null 2>&1; then
  bench_quick=""
  [ "$quick" = 1 ] && bench_quick="--quick"
  bash "$gpt_bench" "$B" "$L" $bench_quick 2>&1 | tee "$L/gpt_gpu_bench.txt"
  grep -q "FAILED" "$L/gpt_gpu_bench.txt" && fail "GPT training on the GPU: $(grep -m1 FAILED "$L/gpt_gpu_bench.txt")"
else
  echo "  skipped: no GPU (nvidia-smi -L failed)"
fi

section "done"
[ "$failures" = 0 ] && echo "  every gpu test passed and every kernel has a cuda twin" || echo "  $failures failures"
[ "$failures" = 0 ]
