#!/usr/bin/env bash
# Tensor parallelism 1d across processes (UCX over loopback), through `colossal run`
# (embedded coordinator, node daemon, one worker process per rank): for the small GPT
# (4 heads) with the unshuffled loader, 20 steps on 1 rank give the same per-step losses
# (relative 1e-5) as tensor 2, tensor 4 and data 2 x tensor 2 under ZeRO 1 and 3, and
# with sequence parallelism tensor 2 and data 2 x tensor 2 under ZeRO 2, with
# AdamW and LAMB and gradient accumulation; the final weights (colossal export of each
# run's checkpoint of pieces) agree within the multi-process bounds of
# tests/dp_multiprocess_test.sh (`run` in tests/weight_bounds.h). A tensor-4 checkpoint at step 10 resumes under tensor 2 and
# under 1 rank with the losses of the uninterrupted run, and exports the same weights (a
# tensor-8 3d one under tensor 4 in 2d);
# so does tensor 4 in 2D (2x2 grid), alone and beside data 2 under ZeRO 2, and tensor 8
# in 2.5D (2x2x2) and in 3D (a 2x2x2 cube).
# `colossal graph` predicts the bytes the run's communicators count. Every process is
# started by colossal run, which ends them all.
set -uo pipefail

ROOT="$(pwd)"
source "$ROOT/tests/multiprocess_lib.sh"
enter_workdir tpmp

for opt in adamw lamb; do
  write_job tp "$opt" "n_layer: 2, n_head: 4, d_model: 32, seq_len: 16, vocab: 256"
  "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$opt-1" >/dev/null 2>"err-$opt-1.txt" ||
    { fail "$opt 1 rank: $(tail -2 "err-$opt-1.txt")"; continue; }
  "$COLOSSAL" export "$T/runs/$opt-1/checkpoints" "$T/$opt-1.safetensors" >/dev/null || fail "export $opt-1"
  [ "$(losses "runs/$opt-1/metrics.jsonl" | wc -l)" = 20 ] || fail "$opt: reference lacks steps"
  # data tensor zero micro_batch: micro 2 of 8 accumulates 4 steps per data rank (2
  # under data 2), micro 1 on tensor 4 accumulates 8.
  # A fifth field "sp" turns on Megatron sequence parallelism, "2d", "2.5d", "3d" the
  # grid modes.
  for cfg in "1 2 0 2" "1 2 0 2 sp" "1 4 0 1" "2 2 1 2" "2 2 3 2" "2 2 2 2 sp" "1 4 0 2 2d" "2 4 2 2 2d" \
             "1 8 0 4 2.5d" "1 8 0 4 3d"; do
    set -- $cfg
    sp=false; [ "${5:-}" = sp ] && sp=true
    mode=1d; depth=1
    [ "${5:-}" = 2d ] && mode=2d
    [ "${5:-}" = 2.5d ] && { mode=2.5d; depth=2; }
    [ "${5:-}" = 3d ] && mode=3d
    name="$opt-d$1-t$2-z$3-m$4${5:+-$5}"
    "$COLOSSAL" run "job-$opt.yaml" --set "run_dir=$T/runs/$name" --set "parallel.data=$1" \
      --set "parallel.tensor.size=$2" --set "parallel.tensor.sequence_parallel=$sp" \
      --set "parallel.tensor.mode=$mode" --set "parallel.tensor.depth=$depth" \
      --set "parallel.zero=$3" --set "train.micro_batch=$4" \
      --set "resources.ranks_per_node=$(($1 * $2))" \
      >"out-$name.txt" 2>"err-$name.txt" || { fail "$name: $(tail -2 "err-$name.txt")"; continue; }
    same_losses "runs/$opt-1/metrics.jsonl" "runs/$name/metrics.jsonl" ||
      fail "$name: losses differ from 1 rank: $(paste <(losses runs/$opt-1/metrics.jsonl) <(losses runs/$name/metrics.jsonl) | head -3)"
    same_weights "$opt-1" "$name"
  done
done

# `colossal graph` predicts from the rank's graph what the run's communicators counted:
# data 2 x tensor 2, ZeRO 1, AdamW (no scalar collectives on either group then).
predicted=$("$COLOSSAL" graph job-adamw.yaml --set parallel.data=2 --set parallel.tensor=2 \
  --set parallel.zero=1 --set resources.ranks_per_node=4 | sed -nE 's/^comm\/step +tensor ([0-9]+) B, data ([0-9]+) B.*/\1 \2/p')
measured=$(grep '"step": 2,' runs/adamw-d2-t2-z1-m2/metrics.jsonl |
  sed -nE 's/.*"comm_bytes": \{"data": ([0-9]+), "tensor": ([0-9]+).*/\2 \1/p')
echo "comm bytes per step (tensor data): colossal graph $predicted, measured $measured"
[ -n "$predicted" ] && [ "$predicted" = "$measured" ] || fail "colossal graph predicts '$predicted', the run counted '$measured'"
# And in 2D (tensor 4 on a 2x2 grid, ZeRO 0): the grid row and column groups.
predicted=$("$COLOSSAL" graph job-adamw.yaml --set 'parallel.tensor={size: 4, mode: 2d}' \
  --set resources.ranks_per_node=4 | sed -nE 's/^comm\/step +tensor_col ([0-9]+) B, tensor_row ([0-9]+) B.*/\1 \2/p')
measured=$(grep '"step": 2,' runs/adamw-d1-t4-z0-m2-2d/metrics.jsonl |
  sed -nE 's/.*"tensor_row": ([0-9]+), "tensor_col": ([0-9]+).*/\2 \1/p')
echo "2d comm bytes per step (col row): colossal graph $predicted, measured $measured"
[ -n "$predicted" ] && [ "$predicted" = "$measured" ] || fail "2d: colossal graph predicts '$predicted', the run counted '$measured'"
# And in 3D (tensor 8 on a 2x2x2 cube, micro-batch 4): the cube's three axes.
predicted=$("$COLOSSAL" graph job-adamw.yaml --set 'parallel.tensor={size: 8, mode: 3d}' \
  --set train.micro_batch=4 --set resources.ranks_per_node=8 |
  sed -nE 's/^comm\/step +tensor_col ([0-9]+) B, tensor_depth ([0-9]+) B, tensor_row ([0-9]+) B.*/\1 \2 \3/p')
measured=$(grep '"step": 2,' runs/adamw-d1-t8-z0-m4-3d/metrics.jsonl |
  sed -nE 's/.*"tensor_row": ([0-9]+), "tensor_col": ([0-9]+), "tensor_depth": ([0-9]+).*/\2 \3 \1/p')
echo "3d comm bytes per step (col depth row): colossal graph $predicted, measured $measured"
[ -n "$predicted" ] && [ "$predicted" = "$measured" ] || fail "3d: colossal graph predicts '$predicted', the run counted '$measured'"

# The tensor-4 LAMB checkpoints at step 10 (1d, and 2d on a 2x2 grid) resume under
# tensor 2 and under 1 rank, and the 3d one (a 2x2x2 cube) under 2d on a 2x2 grid.
for case in "1d 2 1d" "1d 1 1d" "2d 2 1d" "2d 1 1d" "3d 4 2d"; do
  set -- $case
  to=$2
  name="resumed-$1-t$to-$3"
  case "$1" in
    2d) from=runs/lamb-d1-t4-z0-m2-2d ;;
    3d) from=runs/lamb-d1-t8-z0-m4-3d ;;
    *) from=runs/lamb-d1-t4-z0-m1 ;;
  esac
  cp -r "$from" "runs/$name"
  rm -rf "runs/$name/checkpoints/step-20"
  "$COLOSSAL" run job-lamb.yaml --set "run_dir=$T/runs/$name" --set "parallel.tensor.size=$to" \
    --set "parallel.tensor.mode=$3" \
    --set "resources.ranks_per_node=$to" >"out-$name.txt" 2>"err-$name.txt" ||
    { fail "resume under tensor $to: $(tail -2 "err-$name.txt")"; continue; }
  grep -q "resumed from" "out-$name.txt" "err-$name.txt" || fail "$name: did not resume"
  same_losses runs/lamb-1/metrics.jsonl "runs/$name/metrics.jsonl" || fail "$name: resumed losses differ"
  same_weights lamb-1 "$name"
done

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all multi-process tensor-parallel checks passed"
