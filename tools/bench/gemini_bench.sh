#!/usr/bin/env bash
# Gemini benchmark: training throughput with the model state in memory, half of it on
# NVMe and all of it on NVMe (static placement: offload_param_frac = offload_optim_frac =
# 0, 0.5, 1), on the small model and GPT-2 124M at micro-batch 8 x 256, the ratio to the
# in-memory run being the figure; with --largest, the largest GPT this machine trains
# (GPT-2 XL, 1.56B parameters, 25 GB of fp32 weights, gradients and AdamW moments on a
# 24 GiB machine) for 3 steps under placement auto, its step time and the worker's peak
# resident memory, and the same model under PyTorch (Debian's python3-torch, the peer of
# tools/bench/gpt_bench) with its address space capped at the machine's memory, to show
# how it fails instead of letting the kernel's OOM killer pick a victim.
#
# Each colossal cell is `colossal run` of a generated AdamW job (grad_clip 1.0, no
# checkpoints, no sample), its step time the median of the steps after the first, read
# from metrics.jsonl with the bytes each step moved through NVMe and rss_peak. The three
# placements run in turn for --rounds rounds and each keeps its best round (the machine's
# disk and cores are shared: the best round is the least disturbed one).
#
# Usage (from the repository root, after tools/setup.sh and
# bazel build //:colossal):
#   tools/bench/gemini_bench.sh [--models small,124m] [--steps 4] [--rounds 2] [--threads 2]
#       [--nvme-dir DIR] [--largest] [--largest-budget 8GiB]
set -uo pipefail

models="small,124m"
steps=4
rounds=2
threads=2
nvme_dir="${TMPDIR:-/tmp}/colossal-gemini-bench"
largest=0
largest_budget="8GiB"
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --nvme-dir) nvme_dir="$2"; shift 2 ;;
    --largest) largest=1; shift ;;
    --largest-budget) largest_budget="$2"; shift 2 ;;
    *) echo "gemini_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

root="$(pwd)"
colossal="$root/bazel-bin/colossal"
[ -x "$colossal" ] || { echo "gemini_bench: build //:colossal first" >&2; exit 2; }
corpus="$root/data/kjv.txt"
[ -f "$corpus" ] || { echo "gemini_bench: $corpus missing (tools/setup.sh writes it)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/gemini-bench.XXXXXX")"
mkdir -p "$nvme_dir"
trap 'rm -rf "$work"' EXIT

# model KEY: "n_layer n_head d_model vocab seq_len batch"
model() {
  case "$1" in
    small) echo "6 6 384 256 256 8" ;;
    124m) echo "12 12 768 50257 256 8" ;;
    xl) echo "48 25 1600 50257 128 1" ;;
    *) echo "gemini_bench: unknown model $1" >&2; exit 2 ;;
  esac
}

# run_job NAME MODEL STEPS SETS...: runs the job; prints "median_ms read_MB written_MB rss_MiB"
# over the steps after the first (empty on failure; its output in $work/NAME.txt).
run_job() {
  local name="$1" key="$2" n="$3"
  shift 3
  read -r L H D V T B <<<"$(model "$key")"
  cat >"$work/$name.yaml" <<YAML
name: gemini-bench-$name
run_dir: $work/runs/$name
model: {type: gpt, n_layer: $L, n_head: $H, d_model: $D, seq_len: $T, vocab: $V}
data: {train: $corpus, val_fraction: 0.0}
train:
  steps: $n
  global_batch: $B
  micro_batch: $B
  optimizer: {type: adamw, lr: 6.0e-4, weight_decay: 0.1, no_decay: [bias, ln_]}
  grad_clip: 1.0
sample: {tokens: 0}
YAML
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  if ! COLOSSAL_PROGRESS=0 "$colossal" run "$work/$name.yaml" --threads "$threads" --no-resume --no-checkpoints \
    "${sets[@]}" >"$work/$name.txt" 2>&1; then
    echo "gemini_bench: $name failed: $(tail -2 "$work/$name.txt")" >&2
    return
  fi
  /usr/bin/python3 - "$work/runs/$name/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step_ms"' in l]
timed = rows[1:] or rows
ms = statistics.median(r["step_ms"] for r in timed)
rd = statistics.median(r.get("nvme_read_bytes", 0) for r in timed) / 1e6
wr = statistics.median(r.get("nvme_write_bytes", 0) for r in timed) / 1e6
rss = max(r["rss_peak"] for r in rows) / 1048576
print(f"{ms:.1f} {rd:.0f} {wr:.0f} {rss:.0f}")
PY
}

echo "gemini_bench: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $threads threads, NVMe dir $nvme_dir ($(df -h --output=avail "$nvme_dir" | tail -1 | tr -d ' ') free)"
echo
echo "| model | state | step ms | tok/s | ratio to memory | NVMe read MB/step | written MB/step | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
IFS=',' read -r -a keys <<<"$models"
for key in "${keys[@]+"${keys[@]}"}"; do
  read -r L H D V T B <<<"$(model "$key")"
  declare -A best=()
  for round in $(seq 1 "$rounds"); do
    for frac in 0 0.5 1; do
      sets=()
      if [ "$frac" != 0 ]; then
        sets=("memory.nvme_dir=$nvme_dir" "memory.offload_param_frac=$frac" "memory.offload_optim_frac=$frac")
      fi
      out="$(run_job "$key-$frac" "$key" "$steps" "${sets[@]}")"
      [ -n "$out" ] || continue
      if [ -z "${best[$frac]:-}" ] || awk -v a="${out%% *}" -v b="${best[$frac]%% *}" 'BEGIN { exit !(a < b) }'; then
        best[$frac]="$out"
      fi
    done
  done
  base_ms="${best[0]:-}"
  base_ms="${base_ms%% *}"
  for frac in 0 0.5 1; do
    label="in memory"
    [ "$frac" = 0 ] || label="$(awk -v f="$frac" 'BEGIN { printf "%d%% on NVMe", f * 100 }')"
    [ -n "${best[$frac]:-}" ] && [ -n "$base_ms" ] || { echo "| $key | $label | failed | | | | | |"; continue; }
    read -r ms rd wr rss <<<"${best[$frac]}"
    awk -v k="$key" -v l="$label" -v ms="$ms" -v base="$base_ms" -v b="$B" -v t="$T" -v rd="$rd" -v wr="$wr" \
      -v rss="$rss" 'BEGIN { printf "| %s B%d T%d | %s | %.0f | %.0f | **%.3f** | %s | %s | %s |\n",
                             k, b, t, l, ms, b * t / (ms / 1000), base / ms, rd, wr, rss }'
  done
done

if [ "$largest" = 1 ]; then
  read -r L H D V T B <<<"$(model xl)"
  params=$(/usr/bin/python3 -c "L,D,V,T=$L,$D,$V,$T; print(L*(12*D*D+13*D)+V*D+T*D+2*D)")
  mem_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
  echo
  echo "largest model: GPT-2 XL, $params parameters ($((params * 16 / 1000000000)) GB of fp32 weights, gradients and AdamW moments), B$B T$T; machine memory $((mem_kib / 1048576)) GiB"
  out="$(run_job xl xl 3 memory.placement=auto "memory.device_budget=$largest_budget" "memory.nvme_dir=$nvme_dir")"
  if [ -n "$out" ]; then
    read -r ms rd wr rss <<<"$out"
    echo "colossal (Gemini auto, device_budget $largest_budget, rest on NVMe): step $(awk -v m="$ms" 'BEGIN { printf "%.1f", m / 1000 }') s (median of steps 2-3), NVMe read ${rd} MB and written ${wr} MB per step, worker peak resident $rss MiB"
    grep -E "gemini:" "$work/xl.txt" | sed 's/^.*\] //' | head -3
  fi
  # PyTorch: the same model, its address space capped 2 GiB below the machine's memory
  # (so that it fails by itself, not by the kernel's OOM killer choosing a victim).
  torch_out="$work/torch-xl.txt"
  cap_kib=$((mem_kib - 2 * 1048576))
  prlimit --as=$((cap_kib * 1024)) /usr/bin/python3 "$root/tools/bench/torch_gpt_bench.py" --n_layer "$L" --n_head "$H" \
    --d_model "$D" --vocab "$V" --seq_len "$T" --batch "$B" --threads "$threads" --warmup 0 --steps 1 --json \
    >"$torch_out" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    echo "PyTorch: trained it ($(tail -1 "$torch_out"))"
  else
    echo "PyTorch (address space capped at $((cap_kib / 1048576)) GiB): exit $rc in $(grep -E '^ *File' "$torch_out" | tail -1 | sed 's/^ *//'): $(grep -E 'Error|error|Killed|memory' "$torch_out" | tail -1 | cut -c1-240)"
  fi
fi
