#!/usr/bin/env bash
# Data parallelism across processes (UCX over loopback), through `colossal run` (embedded
# coordinator, node daemon, one worker process per rank): for the small GPT with the
# unshuffled loader, 20 steps on 1 rank give the same per-step losses as 2 and 4 ranks
# under ZeRO 0, 1, 2 and 3 (relative 1e-5), with AdamW and LAMB, with and without
# gradient accumulation; the final weights agree to 1e-5 (colossal export of each run's
# checkpoint, compared by a small reader). Also: a sharded checkpoint resumes on another
# degree. Every process is started by colossal run, which ends them all.
set -uo pipefail

ROOT="$(pwd)"
source "$ROOT/tests/multiprocess_lib.sh"
enter_workdir dpmp

for opt in adamw lamb; do
  write_job dp "$opt" "n_layer: 2, n_head: 2, d_model: 32, seq_len: 16, vocab: 256"
  "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$opt-1" >/dev/null 2>"err-$opt-1.txt" ||
    { fail "$opt 1 rank: $(tail -2 "err-$opt-1.txt")"; continue; }
  "$COLOSSAL" export "$T/runs/$opt-1/checkpoints" "$T/$opt-1.safetensors" >/dev/null || fail "export $opt-1"
  [ "$(losses "runs/$opt-1/metrics.jsonl" | wc -l)" = 20 ] || fail "$opt: reference lacks steps"
  # ranks zero micro_batch: micro 2 gives 2 accumulation steps on 2 ranks, none on 4;
  # micro 1 on 4 ranks accumulates 2.
  for cfg in "2 0 2" "2 1 2" "2 2 2" "2 3 2" "4 0 2" "4 1 2" "4 2 2" "4 3 2" "4 3 1"; do
    set -- $cfg
    name="$opt-$1r-z$2-m$3"
    "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$name" --set "parallel.data=$1" \
      --set "parallel.zero=$2" --set "train.micro_batch=$3" --set "resources.ranks_per_node=$1" \
      >"out-$name.txt" 2>"err-$name.txt" || { fail "$name: $(tail -2 "err-$name.txt")"; continue; }
    same_losses "runs/$opt-1/metrics.jsonl" "runs/$name/metrics.jsonl" ||
      fail "$name: losses differ from 1 rank: $(paste <(losses runs/$opt-1/metrics.jsonl) <(losses runs/$name/metrics.jsonl) | head -3)"
    "$COLOSSAL" export "$T/runs/$name/checkpoints" "$T/$name.safetensors" >/dev/null || fail "export $name"
    "$ROOT/tests/compare_weights" "$T/$opt-1.safetensors" "$T/$name.safetensors" >"cmp-$name.txt" ||
      fail "$name: final weights differ: $(cat "cmp-$name.txt")"
  done
done

# A 2-rank ZeRO 1 checkpoint at step 10 resumes on 4 ranks under ZeRO 3 with the losses
# of the uninterrupted run.
cp -r runs/lamb-2r-z1-m2 runs/resumed
rm -rf runs/resumed/checkpoints/step-20
"$COLOSSAL" run job-lamb.yaml --set "run_dir=$T/runs/resumed" --set parallel.data=4 --set parallel.zero=3 \
  --set resources.ranks_per_node=4 >out-resumed.txt 2>err-resumed.txt || fail "resume on 4 ranks: $(tail -2 err-resumed.txt)"
grep -q "resumed from" out-resumed.txt || fail "did not resume"
same_losses runs/lamb-1/metrics.jsonl runs/resumed/metrics.jsonl || fail "resumed losses differ"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all multi-process data-parallel checks passed"
