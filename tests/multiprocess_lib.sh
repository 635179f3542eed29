# Shared by tests/*_multiprocess_test.sh (sourced after setting ROOT, the runfiles root):
# the work directory, the shared small job, failure counting, and the comparison of two
# runs' per-step losses and final weights.
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# losses METRICS: "step loss" lines, the last record of each step (a resumed run
# rewrites the steps after its checkpoint).
losses() {
  grep '"loss"' "$1" | sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/' |
    awk '{l[$1]=$2} END {for (s in l) print s, l[s]}' | sort -n
}

# same_losses A B: per-step losses agree within 1e-5 relative.
same_losses() {
  paste <(losses "$1") <(losses "$2") | awk '
    NF != 4 || $1 != $3 { bad = 1 }
    { d = $2 - $4; if (d < 0) d = -d; a = $2 < 0 ? -$2 : $2; if (d > 1e-5 * a) bad = 1 }
    END { exit bad }'
}

# enter_workdir NAME: a fresh $T (under TEST_TMPDIR) holding corpus.txt, made the working
# directory; COLOSSAL is the CLI the test runs.
enter_workdir() {
  COLOSSAL="$ROOT/colossal"
  T="${TEST_TMPDIR:-$(mktemp -d)}/$1"
  rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
  cp "$ROOT/tests/golden/adamw/corpus.txt" corpus.txt
}

# write_job NAME OPTIMIZER MODEL [VAL_FRACTION]: job-OPTIMIZER.yaml, the shared small
# job: GPT MODEL ("n_layer: 2, n_head: 2, ..."), the unshuffled loader, 20 steps of 8
# sequences in micro-batches of 2, warm-up and cosine decay, clipping, a checkpoint every
# 10 steps, one thread per rank.
write_job() {
  cat > "job-$2.yaml" <<YAML
name: $1-$2
model: {type: gpt, $3}
data: {train: corpus.txt, val_fraction: ${4:-0.0}, shuffle: false}
train:
  steps: 20
  global_batch: 8
  micro_batch: 2
  optimizer: {type: $2, lr: 1.0e-2, weight_decay: 0.1, no_decay: [bias, ln_]}
  lr_schedule: {warmup: 2, decay: cosine, min_lr: 1.0e-3}
  grad_clip: 1.0
  checkpoint: {every: 10, keep: 0}
parallel: {bucket: 8KiB, timeout_s: 30}
resources: {threads_per_rank: 1}
YAML
}

# same_weights REF NAME: the final weights of run NAME (colossal export of its
# checkpoint) within the multi-process bounds of $REF.safetensors'.
same_weights() {
  "$COLOSSAL" export "$T/runs/$2/checkpoints" "$T/$2.safetensors" >/dev/null || { fail "export $2"; return; }
  "$ROOT/tests/compare_weights" "$T/$1.safetensors" "$T/$2.safetensors" \
    >"cmp-$2.txt" || { fail "$2: final weights differ: $(cat "cmp-$2.txt")"; return; }
  echo "$2: $(cat "cmp-$2.txt")"
}

# kill_rank RANK WHAT AFTER STEPS: runs job-kill.yaml twice (runs/kill-ref uninterrupted,
# runs/kill with rank RANK's worker killed by kill -9 once AFTER steps are logged). The
# killed run must restart once from its checkpoint, a surviving rank's error (when the
# job has more ranks than the one killed) must name rank RANK, and it must end with STEPS
# steps of the reference's losses. WHAT names the run in the messages ("pipeline",
# "sequence").
kill_rank() {
  local rank="$1" what="$2" after="$3" steps="$4" victim="" t_kill
  "$COLOSSAL" run job-kill.yaml --set "run_dir=$T/runs/kill-ref" >out-kill-ref.txt 2>&1 ||
    fail "$what kill reference: $(tail -2 out-kill-ref.txt)"
  "$COLOSSAL" run job-kill.yaml --set "run_dir=$T/runs/kill" >out-kill.txt 2>&1 &
  local run_pid=$!
  for _ in $(seq 1 600); do
    if [ "$(losses runs/kill/metrics.jsonl 2>/dev/null | wc -l)" -ge "$after" ]; then
      victim=$(pgrep -f "$T/runs/kill/.*/attempt-1/rank-$rank/job.yaml" | head -1)
      break
    fi
    sleep 0.1
  done
  if [ -z "$victim" ]; then
    kill "$run_pid" 2>/dev/null
    wait "$run_pid" 2>/dev/null
    fail "no rank-$rank worker of the $what run to kill"
    return
  fi
  kill -9 "$victim"
  t_kill=$(date +%s%N)
  wait "$run_pid" || fail "the killed $what run did not recover: $(tail -3 out-kill.txt)"
  grep -q "restart 1 of 1" out-kill.txt || fail "the killed $what run did not restart: $(tail -3 out-kill.txt)"
  if [ "$rank" -gt 0 ]; then
    grep -Eq "colossal-worker: error: .*rank $rank \(global rank $rank\) failed" out-kill.txt ||
      fail "the surviving $what rank's error does not name rank $rank: $(grep 'colossal-worker: error' out-kill.txt | head -2)"
  fi
  [ "$(losses runs/kill/metrics.jsonl | wc -l)" = "$steps" ] || fail "the killed $what run lacks steps"
  same_losses runs/kill-ref/metrics.jsonl runs/kill/metrics.jsonl || fail "losses after the $what restart differ"
  echo "dead $what rank: killed rank $rank (pid $victim) after step $after; $(grep -o 'restart 1 of 1' out-kill.txt | head -1), run ended $(( ($(date +%s%N) - t_kill) / 1000000 )) ms after the kill"
}
kill_rank1() { kill_rank 1 "$@"; }
