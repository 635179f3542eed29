#!/usr/bin/env bash
# Sequence parallelism across processes (UCX over loopback), through `colossal run`
# (embedded coordinator, node daemon, one worker process per rank): for the small GPT
# (4 heads, 16 positions) with the unshuffled loader, 20 steps on 1 rank give the same
# per-step losses (relative 1e-5) and validation loss as
#   ring attention over sequence 2 and 4 (zigzag chunks) and 2 (contiguous),
#   all-to-all over sequence 2 and 4,
#   sequence 2 x data 2 (ring under ZeRO 1, all-to-all under ZeRO 3),
#   sequence 2 x tensor 2 (both modes), sequence 2 x pipeline 2 (ring), and
#   sequence 2 x data 2 x tensor 2 (ring, ZeRO 2: 8 ranks), and sequence 2 in both modes
#   with activation checkpointing (the attention recomputed, its transfers again),
# with AdamW and LAMB; the final weights (colossal export of each run's checkpoint)
# agree within the multi-process bounds (`run` in tests/weight_bounds.h). A sequence-4
# checkpoint at step 10 resumes under 1 rank with the losses of the uninterrupted run.
# `colossal graph` predicts the bytes the sequence group counts. A sequence rank killed
# mid-ring fails its peer's step naming rank 1 within parallel.timeout_s, and the job
# restarts from its checkpoint with the uninterrupted losses. Every process is started
# by colossal run, which ends them all.
set -uo pipefail

ROOT="$(pwd)"
source "$ROOT/tests/multiprocess_lib.sh"
enter_workdir spmp

val_loss() { grep '"val_loss"' "$1" | tail -1 | sed -E 's/.*"val_loss": ([^,}]+).*/\1/'; }
same_val() {
  awk -v a="$(val_loss "$1")" -v b="$(val_loss "$2")" 'BEGIN {
    d = a - b; if (d < 0) d = -d; if (a == "" || d > 1e-5 * (a < 0 ? -a : a)) exit 1 }'
}

for opt in adamw lamb; do
  write_job sp "$opt" "n_layer: 2, n_head: 4, d_model: 32, seq_len: 16, vocab: 256" 0.2
  "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$opt-1" >/dev/null 2>"err-$opt-1.txt" ||
    { fail "$opt 1 rank: $(tail -2 "err-$opt-1.txt")"; continue; }
  "$COLOSSAL" export "$T/runs/$opt-1/checkpoints" "$T/$opt-1.safetensors" >/dev/null || fail "export $opt-1"
  [ "$(losses "runs/$opt-1/metrics.jsonl" | wc -l)" = 20 ] || fail "$opt: reference lacks steps"
  # sequence mode zigzag data tensor pipeline zero
  for cfg in "2 ring true 1 1 1 0" "4 ring true 1 1 1 0" "2 ring false 1 1 1 0" "2 all_to_all - 1 1 1 0" \
             "4 all_to_all - 1 1 1 0" "2 ring true 2 1 1 1" "2 all_to_all - 2 1 1 3" "2 ring true 1 2 1 0" \
             "2 all_to_all - 1 2 1 0" "2 ring true 1 1 2 0" "2 ring true 2 2 1 2" "2 ring true 1 1 1 0 ac" \
             "2 all_to_all - 1 1 1 0 ac"; do
    set -- $cfg
    name="$opt-s$1-$2${3/-/}-d$4-t$5-p$6-z$7${8:+-$8}"
    ac=false; [ "${8:-}" = ac ] && ac=true
    zigzag=(); [ "$3" != - ] && zigzag=(--set "parallel.sequence.zigzag=$3")
    "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$name" --set "parallel.sequence.size=$1" \
      --set "parallel.sequence.mode=$2" "${zigzag[@]}" --set "parallel.data=$4" \
      --set "parallel.tensor=$5" --set "parallel.pipeline=$6" --set "parallel.zero=$7" \
      --set "memory.activation_checkpointing=$ac" \
      --set "resources.ranks_per_node=$(($1 * $4 * $5 * $6))" \
      >"out-$name.txt" 2>"err-$name.txt" || { fail "$name: $(tail -2 "err-$name.txt")"; continue; }
    same_losses "runs/$opt-1/metrics.jsonl" "runs/$name/metrics.jsonl" ||
      fail "$name: losses differ from 1 rank: $(paste <(losses runs/$opt-1/metrics.jsonl) <(losses runs/$name/metrics.jsonl) | head -3)"
    same_val "runs/$opt-1/metrics.jsonl" "runs/$name/metrics.jsonl" ||
      fail "$name: val_loss $(val_loss runs/$name/metrics.jsonl), 1 rank $(val_loss runs/$opt-1/metrics.jsonl)"
    same_weights "$opt-1" "$name"
  done
done

# `colossal graph` predicts from the rank's graph what the sequence group counted: data 2
# x sequence 2, AdamW (the gradients and every scalar go over the data x sequence group,
# the world here; the sequence group carries the attention's transfers only).
for case in "ring 1 ringtrue" "all_to_all 3 all_to_all"; do
  set -- $case
  predicted=$("$COLOSSAL" graph job-adamw.yaml --set parallel.sequence.size=2 --set "parallel.sequence.mode=$1" \
    --set parallel.data=2 --set "parallel.zero=$2" --set resources.ranks_per_node=4 |
    sed -nE 's/^comm\/step.* sequence ([0-9]+) B.*/\1/p')
  measured=$(grep '"step": 2,' "runs/adamw-s2-$3-d2-t1-p1-z$2/metrics.jsonl" | sed -nE 's/.*"sequence": ([0-9]+).*/\1/p')
  echo "$1 comm bytes per step (sequence): colossal graph $predicted, measured $measured"
  [ -n "$predicted" ] && [ "$predicted" = "$measured" ] || fail "$1: colossal graph predicts '$predicted', the run counted '$measured'"
done

# The sequence-4 LAMB checkpoint at step 10 resumes under 1 rank.
cp -r runs/lamb-s4-ringtrue-d1-t1-p1-z0 runs/resumed-s4-1
rm -rf runs/resumed-s4-1/checkpoints/step-20
"$COLOSSAL" run job-lamb.yaml --set "run_dir=$T/runs/resumed-s4-1" >out-resumed.txt 2>err-resumed.txt ||
  fail "resume under 1 rank: $(tail -2 err-resumed.txt)"
grep -q "resumed from" out-resumed.txt err-resumed.txt || fail "resumed-s4-1: did not resume"
same_losses runs/lamb-1/metrics.jsonl runs/resumed-s4-1/metrics.jsonl || fail "resumed-s4-1: resumed losses differ"
same_weights lamb-1 resumed-s4-1

# A dead sequence rank: rank 1 of a ring-2 run killed (kill -9) mid-run fails the ring
# step of rank 0 naming it within parallel.timeout_s; the job restarts from its last
# checkpoint and ends with the losses of an uninterrupted run.
cat > job-kill.yaml <<YAML
name: sp-kill
model: {type: gpt, n_layer: 4, n_head: 4, d_model: 64, seq_len: 256, vocab: 256}
data: {train: corpus.txt, val_fraction: 0.0, shuffle: false}
train:
  steps: 40
  global_batch: 4
  micro_batch: 2
  optimizer: {type: adamw, lr: 1.0e-3}
  max_restarts: 1
  checkpoint: {every: 10, keep: 0}
parallel: {sequence: 2, timeout_s: 10}
resources: {ranks_per_node: 2, threads_per_rank: 1}
YAML
kill_rank1 sequence 15 40

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all multi-process sequence-parallel checks passed"
