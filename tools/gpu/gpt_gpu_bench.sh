#!/usr/bin/env bash
# tools/gpu/gpt_gpu_bench.sh BUNDLE_DIR LOG_DIR [--quick]: GPT training on the GPU, colossal
# beside PyTorch on the same GPU in the same run (tools/gpu/check.sh calls it; needs a GPU).
#
#   GPT-2 124M (12L d768 H12, vocabulary 50304), T 1024, batch 16, bf16, AdamW:
#     colossal (train.precision: bf16, resources.device: cuda) against PyTorch eager and
#     torch.compile (autocast bf16, fused AdamW; tools/bench/torch_gpt_bench.py --device cuda)
#   GPT 1.5B (48L d1600 H25), T 1024, batch 8, bf16, AdamW: colossal against PyTorch eager
#
# Both sides train the same model (tools/reference/gpt_torch.py is the PyTorch one), batch
# and optimizer; colossal reads the default corpus as bytes, PyTorch random tokens (the
# step's cost does not depend on the ids). Each figure is the median step of the timed
# steps after the warm-up (the compile is in torch.compile's warm-up). MFU = model FLOPs
# B·T·(6N + 12·L·T·C) per second over the device's dense bf16 peak (colossal's metrics;
# the same formula and peak for PyTorch). Goals (issue 10): 124M at >= 1.1x PyTorch
# eager's tokens/s and >= 400k tokens/s; 1.5B at >= 45 % MFU.
set -uo pipefail

B="$1"
L="$2"
quick="${3:-}"
here="$(cd "$(dirname "$0")" && pwd)"
torch_bench="$here/torch_gpt_bench.py"
[ -f "$torch_bench" ] || torch_bench="$here/../bench/torch_gpt_bench.py"  # the repository's layout
steps=20 warmup=5
[ "$quick" = "--quick" ] && steps=6 warmup=2

# The device's dense bf16 peak, from the runtime's table (what colossal's MFU uses).
peak="$("$B/bench/cuda_kernel_bench" --peaks 2>/dev/null | sed -n 's/.*"bf16_tflops": *\([0-9.]*\).*/\1e12/p')"

# colossal_run NAME LAYERS HEADS DMODEL BATCH: prints "step_ms tokens_per_s mfu gpu_mem_peak" or fails.
colossal_run() {
  local name="$1" layers="$2" heads="$3" dmodel="$4" batch="$5" dir="$L/colossal-$1"
  mkdir -p "$dir"
  cat > "$dir/job.yaml" <<EOF
name: bench-$name
run_dir: $dir/run
model: {type: gpt, n_layer: $layers, n_head: $heads, d_model: $dmodel, seq_len: 1024, vocab: 50304}
data: {train: $B/data/kjv.txt, val_fraction: 0.0}
train:
  steps: $((steps + warmup))
  global_batch: $batch
  micro_batch: $batch
  optimizer: {type: adamw, lr: 6.0e-4, weight_decay: 0.1, no_decay: [bias, ln_]}
  lr_schedule: {warmup: 2, decay: cosine, min_lr: 6.0e-5}
  grad_clip: 1.0
  precision: bf16
resources: {device: cuda}
sample: {tokens: 0}
EOF
  (cd "$B" && timeout 300 bin/colossal run "$dir/job.yaml" --no-checkpoints --no-resume > "$dir/log.txt" 2>&1) || {
    echo "FAILED: $(tail -1 "$dir/log.txt" | cut -c1-200)"
    return 1
  }
  python3 - "$dir/run/metrics.jsonl" "$warmup" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step_ms"' in l]
timed = [r for r in rows if r["step"] > int(sys.argv[2])]
med = statistics.median(r["step_ms"] for r in timed)
pick = min(timed, key=lambda r: abs(r["step_ms"] - med))
print("%.1f %.0f %.3f %d" % (med, pick["tokens_per_s"], pick["mfu"], rows[-1].get("gpu_mem_peak", 0)))
EOF
}

# torch_run LAYERS HEADS DMODEL BATCH [--compile]: prints "step_ms tokens_per_s mfu gpu_mem_peak".
torch_run() {
  local out
  out="$(timeout 400 python3 "$torch_bench" --device cuda --autocast bf16 --n_layer "$1" --n_head "$2" \
         --d_model "$3" --vocab 50304 --seq_len 1024 --batch "$4" --warmup "$warmup" --steps "$steps" --json ${5:-} \
         2> "$L/torch-$1-$3${5:-}.err")" || { echo "FAILED: $(tail -1 "$L/torch-$1-$3${5:-}.err" | cut -c1-200)"; return 1; }
  python3 - "$out" "$peak" <<'EOF'
import json, sys
j = json.loads(sys.argv[1]); peak = float(sys.argv[2] or 0)
flops = j["model_gflop_per_step"] * 1e9 / (j["step_ms_median"] / 1e3)
print("%.1f %.0f %.3f %d" % (j["step_ms_median"], j["tokens_per_s"], flops / peak if peak else 0, j["gpu_mem_peak"]))
EOF
}

line() { printf '  %-34s %-44s\n' "$1" "$2"; }
fmt() {  # "step_ms tok/s mfu mem" -> readable
  read -r ms tok mfu mem <<<"$1"
  [ "$ms" = "FAILED:" ] && { echo "$1"; return; }
  printf '%8.1f ms %9.0f tok/s  MFU %5.3f  mem %5.1f GiB' "$ms" "$tok" "$mfu" "$(awk -v b="$mem" 'BEGIN {print b / 2^30}')"
}

echo "  GPT training, bf16, T 1024, AdamW; median of $steps steps after $warmup (device bf16 peak ${peak:-?} FLOP/s)"
ours="$(colossal_run 124m 12 12 768 16)"; line "GPT-2 124M B16: colossal" "$(fmt "$ours")"
eager="$(torch_run 12 12 768 16)"; line "GPT-2 124M B16: PyTorch eager" "$(fmt "$eager")"
compiled="$(torch_run 12 12 768 16 --compile)"; line "GPT-2 124M B16: torch.compile" "$(fmt "$compiled")"
read -r _ our_tok _ _ <<<"$ours"
read -r _ eager_tok _ _ <<<"$eager"
read -r _ comp_tok _ _ <<<"$compiled"
python3 - "$our_tok" "$eager_tok" "$comp_tok" <<'EOF'
import sys
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
ours, eager, comp = (num(a) for a in sys.argv[1:4])
if ours and eager:
    print("  124M: colossal / PyTorch eager tokens/s = %.2f (goal >= 1.10: %s); %.0f tok/s (goal >= 400k: %s)" % (
        ours / eager, "met" if ours / eager >= 1.1 else "MISSED", ours, "met" if ours >= 4e5 else "MISSED"))
if ours and comp:
    print("  124M: colossal / torch.compile tokens/s = %.2f" % (ours / comp))
EOF
big="$(colossal_run 1p5b 48 25 1600 8)"; line "GPT 1.5B B8: colossal" "$(fmt "$big")"
big_eager="$(torch_run 48 25 1600 8)"; line "GPT 1.5B B8: PyTorch eager" "$(fmt "$big_eager")"
read -r _ _ big_mfu _ <<<"$big"
awk -v m="$big_mfu" 'BEGIN {if (m + 0 > 0) printf "  1.5B: colossal MFU %.3f (goal >= 0.45: %s)\n", m, (m >= 0.45 ? "met" : "MISSED")}'
